import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from skdssm.baselines import PopularityRecommender


@pytest.fixture
def X():
    return pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 4, 4],
                         "item_id": [10, 20, 30, 10, 20, 10, 40, 20]})


def test_ranks_by_count_and_skips_seen(X):
    model = PopularityRecommender().fit(X)
    assert model.item_ids_.tolist() == [10, 20, 30, 40]    # counts 3, 3, 1, 1; ties by id
    top = model.predict_topk([2, 3, 99], k=2)
    assert top.tolist() == [[30, 40], [20, 30], [10, 20]]
    assert model.predict_topk([2], k=2, exclude_seen=False).tolist() == [[10, 20]]


def test_sample_weight_changes_the_ranking(X):
    weight = np.where(X["item_id"] == 40, 10.0, 1.0)
    assert PopularityRecommender().fit(X, sample_weight=weight).item_ids_[0] == 40


def test_short_rows_are_filled_with_none(X):
    top = PopularityRecommender().fit(X).predict_topk([1], k=4)
    assert top.tolist() == [[40, None, None, None]]


def test_errors(X):
    with pytest.raises(NotFittedError):
        PopularityRecommender().predict_topk([1])
    with pytest.raises(ValueError, match="k must be an int in"):
        PopularityRecommender().fit(X).predict_topk([1], k=5)
    with pytest.raises(ValueError, match="'item_id'"):
        PopularityRecommender().fit(X.drop(columns="item_id"))
