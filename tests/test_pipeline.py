"""RecommenderPipeline: forwarding of the recommender verbs, users-only frames, model selection."""

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn.compose import ColumnTransformer
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


def test_step_modifying_both_towers_names_itself_on_users_frames(geo):
    X, y, users, _, geo_columns = geo
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
    with pytest.raises(ValueError, match="Step 'both' .* user tower"):
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
                 "similar_items", "index_items", "remove_items", "export_embeddings"):
        assert not hasattr(classifier, verb)
    for verb in ("similar_items", "index_items", "remove_items", "export_embeddings"):
        assert hasattr(geo_pipeline(geo_columns), verb)


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
