"""skdssm.plotting: each Display holds the numbers it claims and draws them."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import make_interactions
from skdssm.metrics import hit_rate_at_k, ndcg_at_k, recall_at_k
from skdssm.model_selection import UserHoldoutSplit
from skdssm.pipeline import RecommenderPipeline
from skdssm.preprocessing import MultiHotPadder

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skdssm.plotting import (  # noqa: E402
    MetricAtKDisplay,
    SearchResultsDisplay,
    TrainingHistoryDisplay,
)

FAST = dict(hidden_dims=(16, 8), embedding_dim=8, max_epochs=3, batch_size=64, random_state=0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def frame():
    return make_interactions(n_users=40, n_items=25, interactions_per_user=8, random_state=0).frame


@pytest.fixture(scope="module")
def split(frame):
    positives = frame[frame["label"] == 1].drop(columns=["label", "rating"])
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.3, min_interactions=3,
                                                  random_state=0).split(positives))
    return positives.iloc[train_rows], positives.iloc[test_rows]


def test_history_display_holds_the_models_history(frame):
    X, y = frame.drop(columns=["label", "rating", "timestamp"]), frame["label"]
    model = DSSMRecommender(early_stopping=True, **FAST).fit(X, y)
    display = TrainingHistoryDisplay.from_estimator(model)
    history = model.history_
    np.testing.assert_array_equal(display.epochs, history[:, "epoch"])
    np.testing.assert_allclose(display.losses["train_loss"], history[:, "train_loss"])
    np.testing.assert_allclose(display.losses["valid_loss"], history[:, "valid_loss"])
    assert list(display.scores) == ["valid_auc"]
    np.testing.assert_allclose(display.scores["valid_auc"], history[:, "valid_auc"])
    # Losses on ax_, the score on its twin; every line draws the held numbers.
    assert display.score_ax_ is not None
    assert display.lines_["valid_auc"].axes is display.score_ax_
    np.testing.assert_allclose(display.lines_["train_loss"].get_ydata(), history[:, "train_loss"])
    assert display.lines_["train_loss"].get_label() == "DSSMRecommender train_loss"

    # Only a score: drawn on the given axes, no twin (several models on one axes).
    _, ax = plt.subplots()
    only = display.plot(ax=ax, keys=["valid_auc"], name="tanh")
    assert only.ax_ is ax and only.score_ax_ is None
    assert [line.get_label() for line in ax.get_lines()] == ["tanh valid_auc"]
    with pytest.raises(ValueError, match="keys must name losses"):
        display.plot(keys=["valid_recall"])


def test_history_display_from_a_pipeline_and_from_a_refit_run(frame):
    X, y = frame.drop(columns=["label", "rating", "timestamp"]), frame["label"]
    pipe = RecommenderPipeline([("padder", MultiHotPadder(columns=["tags"])),
                                ("model", DSSMRecommender(early_stopping=False, **FAST))]).fit(X, y)
    display = TrainingHistoryDisplay.from_estimator(pipe)
    np.testing.assert_allclose(display.losses["train_loss"],
                               pipe.named_steps["model"].history_[:, "train_loss"])
    assert display.scores == {} and "valid_loss" not in display.losses

    model = DSSMRecommender(early_stopping=True, refit=True, **FAST).fit(X, y)
    display = TrainingHistoryDisplay.from_history(model.validation_history_, name="run")
    np.testing.assert_allclose(display.scores["valid_auc"],
                               model.validation_history_[:, "valid_auc"])
    with pytest.raises(ValueError, match="'valid_ndcg' is not in the history"):
        TrainingHistoryDisplay.from_history(model.history_, scores=["valid_ndcg"])


@pytest.mark.parametrize("metric, function", [("recall", recall_at_k), ("ndcg", ndcg_at_k),
                                              ("hit_rate", hit_rate_at_k)])
def test_metric_at_k_equals_skdssm_metrics_on_the_same_predictions(split, metric, function):
    train, test = split
    models = {"popularity": PopularityRecommender().fit(train),
              "retriever": TwoTowerRetriever(**FAST).fit(train)}
    display = MetricAtKDisplay.from_estimator(models, test, metric=metric, k=6)
    users = np.sort(test["user_id"].unique())
    np.testing.assert_array_equal(display.k, np.arange(1, 7))
    for name, model in models.items():
        top = model.predict_topk(users, k=6)
        expected = [function(test, top, users=users, k=k) for k in range(1, 7)]
        np.testing.assert_allclose(display.values[name], expected)
        np.testing.assert_allclose(display.lines_[name].get_ydata(), expected)
    assert display.ax_.get_ylabel() == {"recall": "Recall@k", "ndcg": "NDCG@k",
                                        "hit_rate": "HitRate@k"}[metric]


def test_metric_at_k_from_predictions_and_errors(split):
    train, test = split
    users = np.sort(test["user_id"].unique())
    top = PopularityRecommender().fit(train).predict_topk(users, k=5)
    display = MetricAtKDisplay.from_predictions(test, top, users=users, k=3)
    np.testing.assert_allclose(display.values["model"],
                               [recall_at_k(test, top, users=users, k=k) for k in (1, 2, 3)])
    # Two estimators of one class get numbered names.
    twice = MetricAtKDisplay.from_estimator([PopularityRecommender().fit(train)] * 2, test, k=2)
    assert list(twice.values) == ["PopularityRecommender 1", "PopularityRecommender 2"]
    with pytest.raises(ValueError, match="metric must be one of"):
        MetricAtKDisplay.from_predictions(test, top, users=users, metric="auc")
    with pytest.raises(ValueError, match="recommend at least k items"):
        MetricAtKDisplay.from_predictions(test, top, users=users, k=8)


def test_search_display_holds_cv_results():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + rng.normal(scale=0.5, size=60) > 0).astype(int)
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0, 100.0], "max_iter": [200]},
                          scoring={"acc": "accuracy", "auc": "roc_auc"}, refit="auc", cv=3)
    search.fit(X, y)
    results = search.cv_results_
    display = SearchResultsDisplay.from_estimator(search)
    assert display.metric == "auc"
    assert display.labels == ["C=0.01", "C=1.0", "C=100.0"]  # max_iter is common: left out
    np.testing.assert_allclose(display.mean, results["mean_test_auc"])
    np.testing.assert_allclose(display.std, results["std_test_auc"])
    np.testing.assert_allclose(display.split_scores,
                               np.column_stack([results[f"split{i}_test_auc"] for i in range(3)]))
    np.testing.assert_allclose(display.errorbar_.lines[0].get_xdata(), results["mean_test_auc"])
    assert display.scatter_.get_offsets().shape == (9, 2)
    assert [tick.get_text() for tick in display.ax_.get_yticklabels()] == display.labels

    accuracy = SearchResultsDisplay.from_cv_results(results, metric="acc", labels=["a", "b", "c"])
    np.testing.assert_allclose(accuracy.mean, results["mean_test_acc"])
    with pytest.raises(ValueError, match=r"pass metric= one of \['acc', 'auc'\]"):
        SearchResultsDisplay.from_cv_results(results)
    with pytest.raises(ValueError, match="labels must name each of the 3"):
        SearchResultsDisplay.from_cv_results(results, metric="acc", labels=["a"])
