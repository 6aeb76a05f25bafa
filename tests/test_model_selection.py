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
