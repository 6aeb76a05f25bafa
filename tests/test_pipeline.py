"""RecommenderPipeline: forwarding of the recommender verbs, users-only frames, model selection."""

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.preprocessing import StandardScaler

from skdssm import DSSMRecommender
from skdssm.datasets import make_geo_interactions, make_interactions
from skdssm.pipeline import RecommenderPipeline, make_pipeline
from skdssm.preprocessing import MultiHotPadder

FAST = dict(hidden_dims=(16, 8), embedding_dim=4, max_epochs=3, batch_size=128, lr=5e-3,
            early_stopping=False, random_state=0)
GENRES = np.array(["Action", "Comedy", "Drama", "Horror"])


@pytest.fixture(scope="module")
def geo():
    """Geo interactions with a user feature and a multi-valued item ``genres`` column."""
    data = make_geo_interactions(n_users=40, n_items=60, radii=(100,), interactions_per_user=10,
                                 random_state=0)
    items = data["items"].assign(
        genres=np.char.add(np.char.add(GENRES[data.item_factors.argmax(axis=1)], "|"),
                           GENRES[np.arange(len(data["items"])) % len(GENRES)]))
    users = data.users.assign(archetype=data.user_archetype.astype(np.int64))
    frame = data.interactions.merge(users, on="user_id").merge(items, on="item_id")
    X = frame.drop(columns=["rating", "timestamp"])
    y = (frame["rating"] >= 4).astype(int).to_numpy()
    geo_columns = [c for c in items.columns if c.endswith("_100")]
    return X, y, users, items, geo_columns


def geo_pipeline(geo_columns, **model_params):
    scale = ColumnTransformer([("geo", StandardScaler(), geo_columns)], remainder="passthrough",
                              verbose_feature_names_out=False).set_output(transform="pandas")
    return RecommenderPipeline([
        ("padder", MultiHotPadder(columns=["genres"], max_len=3)),
        ("scale", scale),
        ("model", DSSMRecommender(**{**FAST, **model_params})),
    ])


@pytest.fixture(scope="module")
def fitted(geo):
    X, y, _, _, geo_columns = geo
    return geo_pipeline(geo_columns).fit(X, y)


def test_item_side_steps_are_traced_at_fit(fitted):
    assert fitted.item_side_steps_ == ["padder", "scale"]
    assert fitted.user_side_steps_ == []


def test_users_only_frame_gives_the_same_topk_as_ids(fitted, geo):
    _, _, users, _, _ = geo
    frame = users.head(5)
    assert not {"item_id", "genres"} & set(frame.columns)
    expected = fitted.named_steps["model"].predict_topk(frame["user_id"].to_numpy(), k=10)
    np.testing.assert_array_equal(fitted.predict_topk(frame, k=10), expected)
    np.testing.assert_array_equal(fitted.predict_topk(frame["user_id"].to_numpy(), k=10), expected)
    np.testing.assert_allclose(fitted.transform_users(frame),
                               fitted.named_steps["model"].transform_users(frame["user_id"]))


def test_predict_topk_forwards_keyword_arguments(fitted, geo):
    users = geo[2].head(3)
    ids, scores = fitted.predict_topk(users, k=4, exclude_seen=False, return_scores=True)
    assert ids.shape == scores.shape == (3, 4)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_items_frame_passes_through_the_item_steps(geo):
    X, y, _, items, geo_columns = geo
    # Without the ColumnTransformer (remainder="passthrough" reads every column it saw in fit,
    # user columns included), an items frame needs only item columns.
    pipe = RecommenderPipeline([
        ("padder", MultiHotPadder(columns=["genres"], max_len=3)),
        ("model", DSSMRecommender(**FAST)),
    ]).fit(X.drop(columns=geo_columns), y)
    frame = items.drop(columns=geo_columns).head(4)
    np.testing.assert_allclose(pipe.transform_items(frame),
                               pipe.named_steps["model"].transform_items(frame["item_id"]),
                               atol=1e-6)
    assert pipe.transform_items().shape[0] == X["item_id"].nunique()


def test_user_side_step_is_applied_to_users_frames(geo):
    X, y, users, _, _ = geo
    X = X.assign(hobbies=X["archetype"].map({0: "golf|chess", 1: "chess", 2: "tennis"}))
    frame = users.head(4).assign(hobbies=["golf|chess", "chess", "tennis", "chess"])
    pipe = RecommenderPipeline([
        ("hobbies", MultiHotPadder(columns=["hobbies"], max_len=2)),
        ("genres", MultiHotPadder(columns=["genres"], max_len=3)),
        ("model", DSSMRecommender(**FAST)),
    ]).fit(X, y)
    assert pipe.item_side_steps_ == ["genres"]
    assert pipe.user_side_steps_ == ["hobbies"]
    changed = frame.assign(hobbies="tennis")
    assert not np.allclose(pipe.transform_users(frame), pipe.transform_users(changed))


def test_step_scaling_both_towers_serves_users_frames(geo):
    X, y, users, items, geo_columns = geo
    X = X.assign(activity=X["archetype"] * 1.5)
    both = ColumnTransformer([("scale", StandardScaler(), ["activity", *geo_columns])],
                             remainder="passthrough",
                             verbose_feature_names_out=False).set_output(transform="pandas")
    pipe = RecommenderPipeline([
        ("padder", MultiHotPadder(columns=["genres"], max_len=3)),
        ("both", both),
        ("model", DSSMRecommender(**FAST)),
    ]).fit(X, y)
    assert pipe.item_side_steps_ == ["padder"]
    frame = users.head(3).assign(activity=[0.0, 1.5, 3.0])
    scaler = pipe.named_steps["both"].named_transformers_["scale"]
    scaled = frame.assign(activity=(frame["activity"] - scaler.mean_[0]) / scaler.scale_[0])
    np.testing.assert_allclose(pipe.transform_users(frame),
                               pipe.named_steps["model"].transform_users(scaled), atol=1e-6)


def test_step_mixing_both_towers_names_itself_on_users_frames(geo):
    X, y, users, _, geo_columns = geo
    X = X.assign(activity=X["archetype"] * 1.5)
    # A PCA's outputs mix the user and the item columns: no users-only frame can give them.
    mixed = ColumnTransformer([("pca", PCA(n_components=2), ["activity", *geo_columns])],
                              remainder="passthrough",
                              verbose_feature_names_out=False).set_output(transform="pandas")
    pipe = RecommenderPipeline([
        ("padder", MultiHotPadder(columns=["genres"], max_len=3)),
        ("mixed", mixed),
        ("model", DSSMRecommender(**FAST, user_features=["archetype", "pca0", "pca1"])),
    ]).fit(X, y)
    with pytest.raises(ValueError, match="Step 'mixed' .* user-tower column.*pca0"):
        pipe.predict_topk(users.head(2).assign(activity=1.0), k=3)
    assert pipe.predict_topk(users["user_id"].head(2), k=3).shape == (2, 3)


def test_pickled_pipeline_gives_identical_topk(fitted, geo):
    users = geo[2].head(6)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_topk(users, k=10),
                                  fitted.predict_topk(users, k=10))
    assert restored.item_side_steps_ == fitted.item_side_steps_


def test_verbs_need_a_fit_and_a_final_step_that_has_them(geo):
    _, _, users, _, geo_columns = geo
    with pytest.raises(NotFittedError):
        geo_pipeline(geo_columns).predict_topk(users, k=3)
    classifier = RecommenderPipeline([("padder", MultiHotPadder(columns=["genres"])),
                                      ("clf", LogisticRegression())])
    for verb in ("predict_topk", "kneighbors", "transform_users", "transform_items",
                 "similar_items", "index_items", "remove_items", "export_embeddings",
                 "encode_users", "encode_items", "export_onnx"):
        assert not hasattr(classifier, verb)
    for verb in ("similar_items", "index_items", "remove_items", "export_embeddings",
                 "encode_users", "encode_items", "export_onnx"):
        assert hasattr(geo_pipeline(geo_columns), verb)
    with pytest.raises(NotFittedError):
        geo_pipeline(geo_columns).encode_users(users)


@pytest.fixture(scope="module", params=["dssm", "retriever"])
def genres_pipeline(request, geo):
    """A genres padder before each estimator: item frames enter with raw "A|B" genres."""
    from skdssm import TwoTowerRetriever

    X, y, _, items, geo_columns = geo
    X = X.drop(columns=geo_columns)
    model = DSSMRecommender(**FAST) if request.param == "dssm" else TwoTowerRetriever(**FAST)
    pipe = RecommenderPipeline([("padder", MultiHotPadder(columns=["genres"], max_len=3)),
                                ("model", model)])
    if request.param == "dssm":
        pipe.fit(X, y)
    else:
        pipe.fit(X[y == 1])
    return pipe, items.drop(columns=geo_columns)


def test_item_verbs_run_raw_item_frames_through_the_item_steps(genres_pipeline):
    pipe, items = genres_pipeline
    pipe = pickle.loads(pickle.dumps(pipe))  # index_items and remove_items change the model
    model = pipe.named_steps["model"]
    known = items[items["item_id"].isin(model.item_ids_)].head(3)
    assert known["genres"].str.contains("|", regex=False).all()
    # similar_items: a raw frame of catalogue items answers as their ids do.
    np.testing.assert_array_equal(pipe.similar_items(known, k=4),
                                  pipe.similar_items(known["item_id"].to_numpy(), k=4))
    # index_items: a new item described by raw genres is padded, embedded and served.
    new = known.head(1).assign(item_id=10_000, genres="Horror|Comedy")
    assert pipe.index_items(new) is pipe
    assert model.item_ids_[-1] == 10_000
    padded = pipe.named_steps["padder"].transform(new)
    np.testing.assert_allclose(model.item_embeddings_[-1], model.transform_items(padded)[0],
                               atol=1e-6)
    np.testing.assert_array_equal(pipe.similar_items(new, k=5), model.similar_items(padded, k=5))
    # remove_items: the removed items leave every top-k; index_items brings one back.
    users = model.user_ids_[:10]
    best = np.unique(pipe.predict_topk(users, k=3))
    assert pipe.remove_items(best) is pipe
    assert not np.isin(pipe.predict_topk(users, k=10), best).any()
    back = items[items["item_id"] == best[0]]
    pipe.index_items(back)
    assert best[0] in model.item_ids_[~model.index_.removed_]


def test_export_embeddings_is_forwarded(genres_pipeline, tmp_path):
    pipe, _ = genres_pipeline
    pipe.export_embeddings(tmp_path / "embeddings.npz")
    saved = np.load(tmp_path / "embeddings.npz")
    model = pipe.named_steps["model"]
    np.testing.assert_array_equal(saved["item_ids"], model.item_ids_)
    np.testing.assert_allclose(saved["item_embeddings"], model.item_embeddings_)
    np.testing.assert_allclose(saved["user_embeddings"], model.transform_users(model.user_ids_))


class NeighborsRecommender(DSSMRecommender):
    """Stands in for a final step with ``kneighbors``: returns what the pipeline handed it."""

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        return X, n_neighbors, return_distance


def test_kneighbors_is_forwarded_with_users_frames_prepared(geo):
    X, y, users, _, geo_columns = geo
    pipe = geo_pipeline(geo_columns)
    pipe.steps[-1] = ("model", NeighborsRecommender(**FAST))
    pipe.fit(X, y)
    queries, n_neighbors, return_distance = pipe.kneighbors(users.head(2), n_neighbors=5,
                                                            return_distance=False)
    pd.testing.assert_frame_equal(queries, users.head(2))
    assert (n_neighbors, return_distance) == (5, False)
    assert pipe.kneighbors()[0] is None


def test_make_pipeline_names_steps_and_returns_a_recommender_pipeline():
    pipe = make_pipeline(MultiHotPadder(columns=["genres"]), DSSMRecommender())
    assert isinstance(pipe, RecommenderPipeline)
    assert list(pipe.named_steps) == ["multihotpadder", "dssmrecommender"]


# ------------------------------------------------ scaled numeric features (MovieLens-like columns)


@pytest.fixture(scope="module")
def movielens_like():
    """Rating rows with MovieLens-100K's kinds of columns: a numeric user ``age``, categorical
    ``gender``/``occupation``, list-valued item ``genres`` and a numeric item ``year``."""
    rng = np.random.default_rng(0)
    users = pd.DataFrame({"user_id": np.arange(1, 41), "gender": rng.choice(["M", "F"], 40),
                          "age": rng.integers(15, 70, 40),
                          "occupation": rng.choice(["artist", "student", "writer"], 40)})
    items = pd.DataFrame({"item_id": np.arange(1, 51),
                          "year": rng.integers(1950, 1999, 50).astype(float),
                          "genres": [list(rng.choice(GENRES, rng.integers(1, 4), replace=False))
                                     for _ in range(50)]})
    rows = pd.DataFrame({"user_id": rng.integers(1, 41, 900),
                         "item_id": rng.integers(1, 51, 900)}).drop_duplicates()
    X = rows.merge(users, on="user_id").merge(items, on="item_id")
    y = ((X["age"] < 40) == (X["year"] > 1975)).astype(int).to_numpy()
    return X, y, users, items


SCALINGS = {
    "user": [("scale", [("age", ["age"])])],
    "item": [("scale", [("year", ["year"])])],
    "both, one step with two entries": [("scale", [("age", ["age"]), ("year", ["year"])])],
    "both, one scaler over both": [("scale", [("numeric", ["age", "year"])])],
    "both, two steps": [("scale_users", [("age", ["age"])]),
                        ("scale_items", [("year", ["year"])])],
}


def scaled_pipeline(scaling):
    steps = [("padder", MultiHotPadder(columns=["genres"], max_len=3))]
    for step, entries in SCALINGS[scaling]:
        transformer = ColumnTransformer(
            [(name, StandardScaler(), columns) for name, columns in entries],
            remainder="passthrough", verbose_feature_names_out=False)
        steps.append((step, transformer.set_output(transform="pandas")))
    return RecommenderPipeline([*steps, ("model", DSSMRecommender(**FAST))])


def scale_by_hand(pipe, frame):
    """``frame`` with its numeric columns scaled by the fitted scalers' own mean and scale."""
    out = frame.copy()
    for step, entries in SCALINGS[pipe.scaling]:
        for name, columns in entries:
            scaler = pipe.named_steps[step].named_transformers_[name]
            for position, column in enumerate(columns):
                if column in out:
                    out[column] = (out[column] - scaler.mean_[position]) / scaler.scale_[position]
    return out


@pytest.fixture(scope="module", params=list(SCALINGS))
def scaled(request, movielens_like):
    X, y, _, _ = movielens_like
    pipe = scaled_pipeline(request.param).fit(X, y)
    pipe.scaling = request.param
    return pipe


def test_scaled_pipeline_predicts_labelled_pairs(scaled, movielens_like):
    X, y, _, _ = movielens_like
    proba = scaled.predict_proba(X.head(20))
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_scaled_pipeline_serves_users_frames_with_their_scaled_features(scaled, movielens_like):
    _, _, users, _ = movielens_like
    frame = users.head(5)
    model = scaled.named_steps["model"]
    # The embedding of each user is the one of their fit-time (scaled) features...
    np.testing.assert_allclose(scaled.transform_users(frame),
                               model.transform_users(scale_by_hand(scaled, frame)), atol=1e-6)
    np.testing.assert_allclose(scaled.transform_users(frame),
                               model.transform_users(frame["user_id"]), atol=1e-6)
    np.testing.assert_array_equal(scaled.predict_topk(frame, k=5),
                                  model.predict_topk(frame["user_id"].to_numpy(), k=5))
    # ...and a new age is scaled, not passed through raw.
    older = frame.assign(age=frame["age"] + 30)
    np.testing.assert_allclose(scaled.transform_users(older),
                               model.transform_users(scale_by_hand(scaled, older)), atol=1e-6)


def test_scaled_pipeline_serves_items_frames_with_their_scaled_features(scaled, movielens_like):
    _, _, _, items = movielens_like
    frame = items.head(6)
    model = scaled.named_steps["model"]
    padded = scaled.named_steps["padder"].transform(frame)
    np.testing.assert_allclose(scaled.transform_items(frame),
                               model.transform_items(scale_by_hand(scaled, padded)), atol=1e-6)
    np.testing.assert_allclose(scaled.transform_items(frame),
                               model.transform_items(frame["item_id"]), atol=1e-6)


@pytest.fixture(scope="module")
def scaled_both(movielens_like):
    """A padder for the item genres and one step scaling the user age and the item year."""
    X, y, _, _ = movielens_like
    pipe = scaled_pipeline("both, one step with two entries").fit(X, y)
    pipe.scaling = "both, one step with two entries"
    return pipe


def assert_same_inputs(got, expected):
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_encode_runs_raw_frames_through_the_steps_of_their_side(scaled_both, movielens_like):
    _, _, users, items = movielens_like
    pipe, model = scaled_both, scaled_both.named_steps["model"]
    # Users: the age is scaled (a new age too), the item-side padder is skipped.
    frame = users.head(5).assign(age=users["age"].head(5) + [0, 30, 0, -5, 0])
    encoded = pipe.encode_users(frame)
    assert_same_inputs(encoded, model.encode_users(scale_by_hand(pipe, frame)))
    assert not np.array_equal(encoded["user:dense"], model.encode_users(frame)["user:dense"])
    assert_same_inputs(pipe.encode_users(frame["user_id"].to_numpy()),
                       model.encode_users(frame["user_id"].to_numpy()))
    # Items: raw genre lists are padded, the year scaled.
    frame = items.head(6)
    prepared = scale_by_hand(pipe, pipe.named_steps["padder"].transform(frame))
    assert_same_inputs(pipe.encode_items(frame), model.encode_items(prepared))
    assert_same_inputs(pipe.encode_items(frame["item_id"].to_numpy()),
                       model.encode_items(frame["item_id"].to_numpy()))


def run_onnx(path, inputs):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    assert [node.name for node in session.get_inputs()] == list(inputs)
    return session.run(None, inputs)[0]


def test_export_onnx_towers_serve_the_pipeline_encoded_frames(scaled_both, movielens_like,
                                                                tmp_path):
    pytest.importorskip("onnxscript")
    _, _, users, items = movielens_like
    pipe = scaled_both
    pipe.export_onnx(tmp_path)
    assert {"user_tower.onnx", "item_tower.onnx", "vocabularies.json"} <= {
        path.name for path in tmp_path.iterdir()}
    frame = users.head(7).assign(age=users["age"].head(7) + 10)
    np.testing.assert_allclose(run_onnx(tmp_path / "user_tower.onnx", pipe.encode_users(frame)),
                               pipe.transform_users(frame), atol=1e-4)
    frame = items.head(4)
    np.testing.assert_allclose(run_onnx(tmp_path / "item_tower.onnx", pipe.encode_items(frame)),
                               pipe.transform_items(frame), atol=1e-4)


def test_scaled_pipeline_traces_the_side_of_each_scaler(movielens_like):
    X, y, _, _ = movielens_like
    user_side = scaled_pipeline("user").fit(X, y)
    assert (user_side.item_side_steps_, user_side.user_side_steps_) == (["padder"], ["scale"])
    item_side = scaled_pipeline("item").fit(X, y)
    assert (item_side.item_side_steps_, item_side.user_side_steps_) == (["padder", "scale"], [])
    two_steps = scaled_pipeline("both, two steps").fit(X, y)
    assert two_steps.item_side_steps_ == ["padder", "scale_items"]
    assert two_steps.user_side_steps_ == ["scale_users"]


# ----------------------------------------------------------------------------- model selection


@pytest.fixture(scope="module")
def clusters():
    data = make_interactions(n_users=80, n_items=40, interactions_per_user=20, label_noise=0.3,
                             random_state=0)
    X = data.frame.drop(columns=["label", "rating", "timestamp"])
    return X, data.frame["label"].to_numpy(), data.users


def cluster_pipeline(**model_params):
    return RecommenderPipeline([("padder", MultiHotPadder(columns=["tags"])),
                                ("model", DSSMRecommender(**{**FAST, **model_params}))])


def test_grid_search_refits_a_pipeline_that_recommends(clusters):
    X, y, users = clusters
    grid = {"model__hidden_dims": [(16, 8)], "model__activation": ["relu", "tanh"],
            "model__batch_norm": [True], "model__dropout_position": ["after"],
            "padder__max_len": [3, 6]}
    search = GridSearchCV(cluster_pipeline(), grid, scoring="roc_auc", cv=2, n_jobs=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.named_steps["padder"].max_len == search.best_params_[
        "padder__max_len"]
    frame = users[["user_id", "segment", "age_group", "activity"]].head(3)
    assert search.best_estimator_.predict_topk(frame, k=10).shape == (3, 10)
    # BaseSearchCV delegates only sklearn's methods (predict, predict_proba, ...).
    assert not hasattr(search, "predict_topk")


def test_grid_search_finds_the_planted_better_structure(clusters):
    X, y, _ = clusters
    # A one-dimensional L2-normalised embedding is a sign: it cannot separate four clusters.
    grid = {"model__hidden_dims": [(1,), (16, 8)]}
    search = GridSearchCV(cluster_pipeline(max_epochs=6), grid, scoring="roc_auc", cv=3).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"model__hidden_dims": (16, 8)}
    assert scores[1] - scores[0] > 0.1


def test_randomized_search_samples_scipy_distributions(clusters):
    X, y, _ = clusters
    distributions = {"model__lr": loguniform(1e-3, 1e-2), "model__dropout": uniform(0.0, 0.5),
                     "model__embedding_dim": randint(2, 9)}
    search = RandomizedSearchCV(cluster_pipeline(), distributions, n_iter=3, cv=2,
                                scoring="roc_auc", random_state=0).fit(X, y)
    lrs = [params["model__lr"] for params in search.cv_results_["params"]]
    assert len(set(lrs)) == 3 and all(1e-3 <= lr <= 1e-2 for lr in lrs)
    assert 2 <= search.best_params_["model__embedding_dim"] <= 8
    assert search.best_estimator_.predict_topk(X["user_id"].unique()[:2], k=5).shape == (2, 5)


def test_quickstart_runs_the_three_usage_lines(capsys):
    from examples import quickstart

    recommended = quickstart.main(
        {"dssmrecommender__hidden_dims": [(16, 8)], "multihotpadder__max_len": [3]},
        cv=2, max_epochs=2)
    assert recommended.shape == (3, 10)
    assert all(len(set(row)) == 10 for row in recommended)
    out = capsys.readouterr().out
    assert "1. DSSMRecommender().fit(X, y)" in out and "best ROC AUC" in out


def test_history_passes_through_to_a_retriever(geo):
    from skdssm import TwoTowerRetriever

    X, y, users, _, geo_columns = geo
    positives = X[y == 1].assign(timestamp=np.arange(int(y.sum())))
    pipe = RecommenderPipeline([
        ("padder", MultiHotPadder(columns=["genres"], max_len=3)),
        ("model", TwoTowerRetriever(**FAST)),
    ]).fit(positives)
    user = positives["user_id"].iloc[0]
    history = positives[positives["user_id"] == user][["user_id", "item_id", "timestamp"]]
    newcomer = users[users["user_id"] == user].assign(user_id=-1)
    np.testing.assert_allclose(pipe.transform_users(newcomer, history=history.assign(user_id=-1)),
                               pipe.transform_users([user]), rtol=1e-5, atol=1e-6)
    top = pipe.predict_topk(newcomer, k=5, history=history.assign(user_id=-1))
    assert not np.isin(top, history["item_id"]).any()
