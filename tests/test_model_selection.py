"""Splitters for interaction data."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import cross_val_score

from skdssm.datasets import make_interactions
from skdssm.model_selection import LeaveLastOut, TemporalSplit, UserHoldoutSplit


@pytest.fixture(scope="module")
def X():
    frame = make_interactions(n_users=60, n_items=50, interactions_per_user=15,
                              random_state=0).frame
    # A light user (stays in train) and a user and item that only occur late (unseen).
    extra = pd.DataFrame({"user_id": [500, 500, 501], "item_id": [1, 2, 999],
                          "timestamp": frame["timestamp"].max() + np.array([1, 2, 3])})
    return pd.concat([frame, extra], ignore_index=True).sample(frac=1, random_state=0)


def splits(cv, X):
    return list(cv.split(X))


@pytest.mark.parametrize("cv", [UserHoldoutSplit(random_state=0, n_splits=3), LeaveLastOut(),
                                TemporalSplit(test_size=0.25)])
def test_folds_are_disjoint_and_cover_every_row(cv, X):
    folds = splits(cv, X)
    assert len(folds) == cv.get_n_splits(X)
    for (train, test), (train_all, test_all) in zip(folds, cv.__class__(
            **{**_params(cv), "drop_unseen": False}).split(X)):
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(train, train_all)
        np.testing.assert_array_equal(np.sort(np.concatenate([train_all, test_all])),
                                      np.arange(len(X)))
        assert np.isin(test, test_all).all()
        # Dropped rows are exactly the test rows with a user or item unseen in train.
        rows = X.iloc[test_all]
        unseen = ~rows["user_id"].isin(X["user_id"].iloc[train]) | \
            ~rows["item_id"].isin(X["item_id"].iloc[train])
        np.testing.assert_array_equal(np.sort(test), np.sort(test_all[~unseen.to_numpy()]))


def _params(cv):
    return {name: getattr(cv, name) for name in cv._parameter_constraints}


def test_user_holdout_fractions_and_light_users(X):
    cv = UserHoldoutSplit(test_size=0.2, min_interactions=5, drop_unseen=False, random_state=1)
    train, test = next(cv.split(X))
    counts = X["user_id"].value_counts()
    held = X["user_id"].iloc[test].value_counts().reindex(counts.index, fill_value=0)
    heavy = counts >= 5
    np.testing.assert_array_equal(held[heavy], np.clip(np.rint(counts[heavy] * 0.2), 1,
                                                       counts[heavy] - 1))
    assert (held[~heavy] == 0).all() and 500 in set(X["user_id"].iloc[train])
    again = next(cv.split(X))
    np.testing.assert_array_equal(again[1], test)


def test_leave_last_out_holds_out_each_users_latest(X):
    train, test = next(LeaveLastOut(drop_unseen=False).split(X))
    held = X.iloc[test]
    assert held["user_id"].is_unique
    latest = X.groupby("user_id")["timestamp"].max()
    np.testing.assert_array_equal(held.set_index("user_id")["timestamp"],
                                  latest.loc[held["user_id"]])
    assert len(test) == (X["user_id"].value_counts() >= 2).sum()


def test_temporal_split_respects_time_and_drops_unseen(X):
    train, test = next(TemporalSplit(test_size=0.25, drop_unseen=False).split(X))
    assert X["timestamp"].iloc[train].max() < X["timestamp"].iloc[test].min()
    assert abs(len(test) / len(X) - 0.25) < 0.02
    _, kept = next(TemporalSplit(test_size=0.25).split(X))
    assert not X["item_id"].iloc[kept].isin([999]).any()
    assert not X["user_id"].iloc[kept].isin([501]).any()
    cutoff = X["timestamp"].median()
    train, _ = next(TemporalSplit(cutoff=cutoff).split(X))
    assert (X["timestamp"].iloc[train] < cutoff).all()


def test_errors_name_the_column_and_parameter(X):
    with pytest.raises(ValueError, match="Column 'timestamp' is missing from X"):
        next(LeaveLastOut().split(X.drop(columns="timestamp")))
    with pytest.raises(ValueError, match="'test_size' parameter"):
        next(UserHoldoutSplit(test_size=1.5).split(X))
    with pytest.raises(TypeError, match="pandas DataFrame"):
        next(UserHoldoutSplit().split(X.to_numpy()))


def test_works_as_cv_argument(X):
    from sklearn.dummy import DummyRegressor

    scores = cross_val_score(DummyRegressor(), X[["timestamp"]].assign(user_id=X["user_id"],
                                                                         item_id=X["item_id"]),
                             np.ones(len(X)), cv=UserHoldoutSplit(n_splits=2, random_state=0))
    assert len(scores) == 2


# ----------------------------------------------------------------------------- searches

SEARCH_FAST = dict(hidden_dims=(16, 8), embedding_dim=4, max_epochs=3, batch_size=128, lr=5e-3,
                   early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def labelled():
    data = make_interactions(n_users=60, n_items=40, interactions_per_user=15, label_noise=0.3,
                             random_state=0)
    X = data.frame.drop(columns=["label", "rating", "timestamp"])
    return X, data.frame["label"].to_numpy(), data.users[["user_id", "segment", "age_group",
                                                          "activity"]]


def recommender_pipeline(**model_params):
    from skdssm import DSSMRecommender
    from skdssm.pipeline import make_pipeline
    from skdssm.preprocessing import MultiHotPadder

    return make_pipeline(MultiHotPadder(columns=["tags"], max_len=3),
                         DSSMRecommender(**{**SEARCH_FAST, **model_params}))


@pytest.fixture(scope="module")
def grid_search(labelled):
    from skdssm.model_selection import GridSearchCV

    X, y, _ = labelled
    grid = {"dssmrecommender__activation": ["relu", "tanh"]}
    return GridSearchCV(recommender_pipeline(), grid, scoring="roc_auc", cv=2).fit(X, y)


def test_grid_search_answers_the_recommender_verbs_of_its_best_estimator(grid_search, labelled,
                                                                         tmp_path):
    X, _, users = labelled
    best = grid_search.best_estimator_
    frame = users.head(4)
    np.testing.assert_array_equal(grid_search.predict_topk(frame, k=5),
                                  best.predict_topk(frame, k=5))
    ids, scores = grid_search.predict_topk(frame["user_id"], k=5, exclude_seen=False,
                                           return_scores=True)
    assert ids.shape == scores.shape == (4, 5)
    np.testing.assert_allclose(grid_search.transform_users(frame), best.transform_users(frame))
    np.testing.assert_allclose(grid_search.transform_items(), best.transform_items())
    np.testing.assert_allclose(grid_search.transform_items([1, 2]), best.transform_items([1, 2]))
    for got, expected in zip(grid_search.kneighbors(frame["user_id"], n_neighbors=3),
                             best.kneighbors(frame["user_id"], n_neighbors=3)):
        np.testing.assert_allclose(got, expected)
    # sklearn's own delegation is untouched.
    np.testing.assert_allclose(grid_search.predict_proba(X.head()), best.predict_proba(X.head()))


def test_grid_search_forwards_the_serving_verbs_of_a_bare_estimator(labelled, tmp_path):
    from skdssm import DSSMRecommender
    from skdssm.model_selection import GridSearchCV

    X, y, _ = labelled
    X = X.drop(columns=["tags"])
    search = GridSearchCV(DSSMRecommender(**SEARCH_FAST), {"embedding_dim": [4, 6]}, cv=2,
                          scoring="roc_auc").fit(X, y)
    path = tmp_path / "embeddings.npz"
    search.export_embeddings(path)
    np.testing.assert_allclose(np.load(path)["item_embeddings"], search.transform_items())
    items = X.drop_duplicates("item_id").drop(columns=["user_id"]).head(1)
    new_item = items.assign(item_id=999)
    assert search.index_items(new_item) is search
    assert 999 in search.best_estimator_.item_ids_


def test_search_verbs_exist_exactly_when_the_best_estimator_has_them(labelled):
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    from skdssm.model_selection import GridSearchCV

    search = GridSearchCV(recommender_pipeline(), {"dssmrecommender__activation": ["relu"]})
    assert hasattr(search, "predict_topk") and hasattr(search, "transform_items")
    with pytest.raises(NotFittedError):
        search.predict_topk([1], k=3)
    plain = GridSearchCV(LogisticRegression(), {"C": [1.0]})
    assert not hasattr(plain, "predict_topk") and not hasattr(plain, "kneighbors")


def test_search_without_refit_says_how_to_get_a_recommender(labelled):
    from skdssm.model_selection import GridSearchCV

    X, y, _ = labelled
    search = GridSearchCV(recommender_pipeline(max_epochs=1), {"dssmrecommender__lr": [5e-3]},
                          scoring="roc_auc", cv=2, refit=False).fit(X, y)
    assert not hasattr(search, "predict_topk")
    with pytest.raises(AttributeError, match="has no attribute 'predict_topk'") as error:
        search.predict_topk([1, 2], k=3)
    # available_if chains the reason, which the traceback shows.
    assert "refit=False" in str(error.value.__cause__)
    assert "best_params_" in str(error.value.__cause__)


def test_randomized_search_recommends_with_its_best_estimator(labelled):
    from scipy.stats import loguniform
    from sklearn.base import clone

    from skdssm.model_selection import RandomizedSearchCV

    X, y, users = labelled
    distributions = {"dssmrecommender__lr": loguniform(1e-3, 1e-2)}
    search = RandomizedSearchCV(recommender_pipeline(), distributions, n_iter=2, cv=2,
                                scoring="roc_auc", random_state=0)
    assert clone(search).get_params()["n_iter"] == 2
    search.fit(X, y)
    frame = users.head(3)
    np.testing.assert_array_equal(search.predict_topk(frame, k=4),
                                  search.best_estimator_.predict_topk(frame, k=4))
