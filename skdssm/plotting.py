"""Plots of fitted recommenders, in scikit-learn's Display style.

Each Display holds the numbers of one figure; ``plot(ax=None, ...)`` draws them (on a new
figure when ``ax`` is None) and returns the Display with the drawn artists (``ax_``,
``figure_``, ``lines_``); the class methods ``from_estimator`` / ``from_...`` compute the numbers
and plot them, as :class:`sklearn.metrics.RocCurveDisplay` does.

- :class:`TrainingHistoryDisplay`: training loss and validation scores per epoch, from a fitted
  model's ``history_``.
- :class:`MetricAtKDisplay`: Recall / NDCG / HitRate / Precision / MRR at k = 1..K for one or
  several fitted models (or their recommendations) on held-out interactions, computed by
  :mod:`skdssm.metrics`.
- :class:`SearchResultsDisplay`: the candidates of a fitted ``GridSearchCV`` /
  ``RandomizedSearchCV``, mean test score with its spread across folds.

Drawing, and the ``from_*`` methods that draw, need matplotlib (``pip install "skdssm[plot]"``).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .metrics import hit_rate_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k
from .utils._sklearn_compat import check_matplotlib_support

__all__ = ["MetricAtKDisplay", "SearchResultsDisplay", "TrainingHistoryDisplay"]

METRICS = {"recall": (recall_at_k, "Recall"), "ndcg": (ndcg_at_k, "NDCG"),
           "hit_rate": (hit_rate_at_k, "HitRate"), "precision": (precision_at_k, "Precision"),
           "mrr": (mrr_at_k, "MRR")}
LOSSES = ("train_loss", "valid_loss")


def _axes(ax, caller: str):
    check_matplotlib_support(caller)
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


def _integer_ticks(axis) -> None:
    """Epochs and k are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _final_estimator(estimator):
    """The step that was fitted last: the estimator itself, or a pipeline's final step."""
    if not hasattr(estimator, "history_") and hasattr(estimator, "steps"):
        return estimator.steps[-1][1]
    return estimator


class TrainingHistoryDisplay:
    """Training loss and validation scores per epoch of a fitted model.

    Build it with :meth:`from_estimator` (a fitted ``DSSMRecommender`` / ``TwoTowerRetriever``
    or a pipeline ending in one) or :meth:`from_history` (a ``skorch.History``, e.g. the
    early-stopping run a ``refit=True`` model keeps in ``validation_history_``).

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
        Epoch numbers, from 1.
    losses : dict of str to ndarray of shape (n_epochs,)
        ``"train_loss"`` (and ``"valid_loss"`` when the model held out validation rows).
    scores : dict of str to ndarray of shape (n_epochs,)
        Validation scores by history key (``"valid_auc"``, ``"valid_recall_at_10"``); NaN for
        an epoch that did not record it.
    name : str, default=None
        Legend prefix.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes of the losses (of the scores when only scores are drawn).
    score_ax_ : matplotlib Axes or None
        The twin axes of the scores when losses and scores are drawn together.
    figure_ : matplotlib Figure
    lines_ : dict of str to matplotlib Line2D
        The drawn line of each history key.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm import DSSMRecommender
    >>> from skdssm.plotting import TrainingHistoryDisplay
    >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
    ...                          random_state=0)
    >>> X = data.frame.drop(columns=["label", "rating", "timestamp"])
    >>> model = DSSMRecommender(hidden_dims=(16,), max_epochs=3, early_stopping=True,
    ...                         random_state=0).fit(X, data.frame["label"])
    >>> display = TrainingHistoryDisplay.from_estimator(model)
    >>> sorted(display.scores), display.epochs.tolist()
    (['valid_auc'], [1, 2, 3])
    """

    def __init__(self, epochs, losses: dict, scores: dict, *, name: str | None = None):
        self.epochs = epochs
        self.losses = losses
        self.scores = scores
        self.name = name

    @staticmethod
    def _score_keys(history) -> list:
        """Numeric validation entries: ``valid_*`` except the loss and skorch's bookkeeping
        (``*_best`` flags, ``valid_batch_count``)."""
        keys = []
        for row in history:
            for key, value in row.items():
                if (key.startswith("valid_") and key not in LOSSES
                        and not key.endswith(("_best", "_batch_count"))
                        and isinstance(value, (int, float, np.number))
                        and not isinstance(value, (bool, np.bool_)) and key not in keys):
                    keys.append(key)
        return keys

    @classmethod
    def from_history(cls, history, *, scores=None, name=None, ax=None,
                     **kwargs) -> TrainingHistoryDisplay:
        """Plot a ``skorch.History`` (one dict per epoch).

        Parameters
        ----------
        history : skorch.History or list of dict
            One dict per epoch, as skorch records them.
        scores : list of str, default=None
            History keys to draw as scores; by default every numeric ``valid_*`` entry other
            than ``valid_loss`` (skorch's ``*_best`` flags and batch counts left out).
        name : str, default=None
            Legend prefix.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_history")
        rows = list(history)
        if not rows:
            raise ValueError("history is empty: the model has not trained any epoch.")

        def column(key):
            return np.array([row.get(key, np.nan) for row in rows], dtype=np.float64)

        losses = {key: column(key) for key in LOSSES if any(key in row for row in rows)}
        keys = cls._score_keys(rows) if scores is None else list(scores)
        missing = [key for key in keys if not any(key in row for row in rows)]
        if missing:
            raise ValueError(f"History key {missing[0]!r} is not in the history; it records "
                             f"{sorted(set().union(*rows))}.")
        epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(rows)])
        display = cls(epochs, losses, {key: column(key) for key in keys}, name=name)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, *, scores=None, name=None, ax=None,
                       **kwargs) -> TrainingHistoryDisplay:
        """Plot the ``history_`` of a fitted estimator (or of a pipeline's final step).

        Parameters
        ----------
        estimator : estimator
            A fitted DSSMRecommender or TwoTowerRetriever, or a pipeline ending in one.
        scores, name, ax, **kwargs
            As in :meth:`from_history`; ``name`` defaults to the estimator's class name.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        model = _final_estimator(estimator)
        check_is_fitted(model, "history_")
        return cls.from_history(model.history_, scores=scores, ax=ax, **kwargs,
                                name=type(model).__name__ if name is None else name)

    def plot(self, ax=None, *, name=None, keys=None, **kwargs) -> TrainingHistoryDisplay:
        """Draw the losses on ``ax`` and the scores on a twin axes (or on ``ax`` alone).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            New figure when None.
        name : str, default=None
            Legend prefix (default: the Display's ``name``).
        keys : list of str, default=None
            The losses and scores to draw (default all). Drawing only scores (e.g. the
            validation score of several models on one axes) uses ``ax`` for them.
        **kwargs
            Passed to ``Axes.plot`` for every line.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        ax, figure = _axes(ax, f"{type(self).__name__}.plot")
        name = self.name if name is None else name
        keys = [*self.losses, *self.scores] if keys is None else list(keys)
        unknown = [key for key in keys if key not in self.losses and key not in self.scores]
        if unknown:
            raise ValueError(f"keys must name losses {list(self.losses)} or scores "
                             f"{list(self.scores)}; got {unknown[0]!r}.")
        loss_keys = [key for key in keys if key in self.losses]
        score_keys = [key for key in keys if key in self.scores]
        score_ax = ax.twinx() if loss_keys and score_keys else None
        self.lines_ = {}
        for key in keys:
            values = self.losses.get(key, self.scores.get(key))
            target = score_ax if (score_ax is not None and key in self.scores) else ax
            style = {"linestyle": "--"} if (score_ax is not None and key in self.scores) else {}
            label = key if name is None else f"{name} {key}"
            (self.lines_[key],) = target.plot(self.epochs, values, marker="o",
                                              label=label, **{**style, **kwargs})
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel("loss" if loss_keys else ", ".join(score_keys))
        if score_ax is not None:
            score_ax.set_ylabel(", ".join(score_keys))
        # Every line on these axes (earlier Displays' too) and on the twin, in one legend.
        lines = [*ax.get_lines(), *(score_ax.get_lines() if score_ax is not None else [])]
        ax.legend(lines, [line.get_label() for line in lines], fontsize="small")
        self.ax_, self.score_ax_, self.figure_ = ax, score_ax, figure
        return self


class MetricAtKDisplay:
    """A ranking metric at k = 1..K for one or several recommenders (full ranking).

    Build it with :meth:`from_estimator` (fitted models and held-out interactions) or
    :meth:`from_predictions` (recommended ids, e.g. of a library that is not skdssm).

    Parameters
    ----------
    k : ndarray of shape (K,)
        1..K.
    values : dict of str to ndarray of shape (K,)
        The metric at each k, by model name.
    metric : {"recall", "ndcg", "hit_rate", "precision", "mrr"}

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : dict of str to matplotlib Line2D
        The drawn line of each model.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from skdssm.baselines import PopularityRecommender
    >>> from skdssm.plotting import MetricAtKDisplay
    >>> train = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "a", "c"]})
    >>> test = pd.DataFrame({"user_id": [2, 3], "item_id": ["c", "b"]})
    >>> display = MetricAtKDisplay.from_estimator(PopularityRecommender().fit(train), test, k=2)
    >>> display.values["PopularityRecommender"].tolist()
    [0.0, 1.0]
    """

    def __init__(self, k, values: dict, *, metric: str = "recall"):
        self.k = k
        self.values = values
        self.metric = metric

    @staticmethod
    def _metric(metric: str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}; got {metric!r}.")
        return METRICS[metric][0]

    @staticmethod
    def _named(things, what: str) -> dict:
        """A dict stays; one object or a list gets names (class names, numbered if repeated)."""
        if isinstance(things, dict):
            return dict(things)
        if isinstance(things, np.ndarray) or not isinstance(things, (list, tuple)):
            things = [things]
        names = [type(thing).__name__ if what == "estimator" else "model" for thing in things]
        repeated = {name for name in names if names.count(name) > 1}
        counters: dict = {}
        out = {}
        for name, thing in zip(names, things):
            if name in repeated:
                counters[name] = counters.get(name, 0) + 1
                name = f"{name} {counters[name]}"
            out[name] = thing
        return out

    @classmethod
    def from_predictions(cls, y_true, y_pred, *, users=None, items=None, metric="recall",
                         k=None, user_col="user_id", item_col="item_id", ax=None,
                         **kwargs) -> MetricAtKDisplay:
        """Plot the metric of recommended ids at every k up to their width.

        Parameters
        ----------
        y_true : DataFrame or sparse matrix
            Held-out relevant items, as the functions of :mod:`skdssm.metrics` take them.
        y_pred : ndarray of shape (n_users, K), or dict of str to such arrays
            Recommended ids, best first (``predict_topk`` output), of one model or by model
            name.
        users, items : array-like, default=None
            As in :func:`skdssm.metrics.recall_at_k`.
        metric : {"recall", "ndcg", "hit_rate", "precision", "mrr"}, default="recall"
            The metric of :mod:`skdssm.metrics` at each k.
        k : int, default=None
            Largest k (default: the width of the recommendations).
        user_col, item_col : str, default="user_id", "item_id"
            Columns of a frame ``y_true``.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : MetricAtKDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        function = cls._metric(metric)
        predictions = cls._named(y_pred, "prediction")
        widths = {np.asarray(top).shape[-1] for top in predictions.values()}
        k = min(widths) if k is None else k
        if min(widths) < k:
            raise ValueError(f"k={k} but the narrowest recommendations hold {min(widths)} ids "
                             "per user; recommend at least k items (predict_topk(users, k=k)).")
        ks = np.arange(1, k + 1)
        values = {name: np.array([function(y_true, top, users=users, items=items, k=int(j),
                                           user_col=user_col, item_col=item_col) for j in ks])
                  for name, top in predictions.items()}
        return cls(ks, values, metric=metric).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimators, X, *, users=None, metric="recall", k=20,
                       exclude_seen=True, user_col="user_id", item_col="item_id", ax=None,
                       **kwargs) -> MetricAtKDisplay:
        """Recommend ``k`` items per test user with each model and plot the metric at 1..k.

        Parameters
        ----------
        estimators : fitted recommender, list of them, or dict of str to them
            Anything with ``predict_topk(users, k, exclude_seen=...)``: skdssm's estimators,
            pipelines and baselines. A dict names the lines; otherwise the class names do.
        X : DataFrame
            Held-out interactions (``user_col``, ``item_col``): the relevant items.
        users : array-like, default=None
            Users to evaluate (default: every user of X, sorted).
        metric : {"recall", "ndcg", "hit_rate", "precision", "mrr"}, default="recall"
        k : int, default=20
            Largest k.
        exclude_seen : bool, default=True
            Passed to ``predict_topk`` (the training items of a user are not recommended).
        user_col, item_col : str, default="user_id", "item_id"
            Columns of X.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : MetricAtKDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        cls._metric(metric)
        if users is None:
            if user_col not in X.columns:
                raise ValueError(f"Column {user_col!r} is missing from X; it has columns "
                                 f"{list(X.columns)}. Set user_col.")
            users = np.sort(X[user_col].unique())
        predictions = {name: model.predict_topk(users, k=k, exclude_seen=exclude_seen)
                       for name, model in cls._named(estimators, "estimator").items()}
        return cls.from_predictions(X, predictions, users=users, metric=metric, k=k,
                                    user_col=user_col, item_col=item_col, ax=ax, **kwargs)

    def plot(self, ax=None, **kwargs) -> MetricAtKDisplay:
        """One line per model: the metric against k.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            New figure when None.
        **kwargs
            Passed to ``Axes.plot`` for every line.

        Returns
        -------
        display : MetricAtKDisplay
        """
        ax, figure = _axes(ax, f"{type(self).__name__}.plot")
        self.lines_ = {}
        for name, values in self.values.items():
            (self.lines_[name],) = ax.plot(self.k, values, label=name, **kwargs)
        ax.set(xlabel="k", ylabel=f"{METRICS[self.metric][1]}@k")
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, figure
        return self


class SearchResultsDisplay:
    """The candidates of a hyper-parameter search: mean test score and its spread over folds.

    Build it with :meth:`from_estimator` (a fitted ``GridSearchCV`` / ``RandomizedSearchCV``)
    or :meth:`from_cv_results` (its ``cv_results_``).

    Parameters
    ----------
    labels : list of str
        One per candidate: the parameters that differ between candidates.
    mean, std : ndarray of shape (n_candidates,)
        ``mean_test_<metric>`` and ``std_test_<metric>``.
    split_scores : ndarray of shape (n_candidates, n_splits)
        ``split<i>_test_<metric>``, one column per fold.
    metric : str
        The scorer's name (``"score"`` for a single scorer).

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    errorbar_ : matplotlib ErrorbarContainer
        Mean plus or minus one standard deviation of each candidate.
    scatter_ : matplotlib PathCollection
        The fold scores.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skdssm.plotting import SearchResultsDisplay
    >>> X, y = [[0], [1], [2], [3], [4], [5]], [0, 0, 0, 1, 1, 1]
    >>> search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, cv=2).fit(X, y)
    >>> display = SearchResultsDisplay.from_estimator(search)
    >>> display.labels
    ['C=0.01', 'C=1.0']
    """

    def __init__(self, labels, mean, std, split_scores, *, metric: str = "score"):
        self.labels = labels
        self.mean = mean
        self.std = std
        self.split_scores = split_scores
        self.metric = metric

    @staticmethod
    def _labels(params: list) -> list:
        """``name=value`` of the parameters that differ between candidates."""
        names = list(dict.fromkeys(name for candidate in params for name in candidate))
        varying = [name for name in names
                   if len({repr(candidate.get(name, "<absent>")) for candidate in params}) > 1]
        return [", ".join(f"{name}={candidate[name]!r}" if isinstance(candidate[name], str)
                          else f"{name}={candidate[name]}" for name in varying
                          if name in candidate) or f"candidate {i}"
                for i, candidate in enumerate(params)]

    @classmethod
    def from_cv_results(cls, cv_results: dict, *, metric=None, labels=None, ax=None,
                        **kwargs) -> SearchResultsDisplay:
        """Plot the candidates of a ``cv_results_`` dict.

        Parameters
        ----------
        cv_results : dict
            A search's ``cv_results_``.
        metric : str, default=None
            Scorer name of a multi-metric search (``mean_test_<metric>``); None for a single
            scorer.
        labels : list of str, default=None
            One per candidate (default: the parameters that differ between candidates).
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : SearchResultsDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_cv_results")
        metric = "score" if metric is None else metric
        if f"mean_test_{metric}" not in cv_results:
            available = sorted(key[len("mean_test_"):] for key in cv_results
                               if key.startswith("mean_test_"))
            raise ValueError(f"cv_results has no mean_test_{metric}; pass metric= one of "
                             f"{available} (the search's scorer names).")
        n_splits = sum(1 for key in cv_results
                       if key.startswith("split") and key.endswith(f"_test_{metric}"))
        splits = np.column_stack([np.asarray(cv_results[f"split{i}_test_{metric}"], float)
                                  for i in range(n_splits)])
        params = list(cv_results["params"])
        labels = cls._labels(params) if labels is None else list(labels)
        if len(labels) != len(params):
            raise ValueError(f"labels must name each of the {len(params)} candidates; got "
                             f"{len(labels)}.")
        display = cls(labels, np.asarray(cv_results[f"mean_test_{metric}"], float),
                      np.asarray(cv_results[f"std_test_{metric}"], float), splits, metric=metric)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, search, *, metric=None, labels=None, ax=None,
                       **kwargs) -> SearchResultsDisplay:
        """Plot the candidates of a fitted search.

        Parameters
        ----------
        search : GridSearchCV or RandomizedSearchCV
            A fitted search.
        metric : str, default=None
            Scorer name; by default the search's ``refit`` scorer when that is a name, else
            its single score.
        labels, ax, **kwargs
            As in :meth:`from_cv_results`.

        Returns
        -------
        display : SearchResultsDisplay
        """
        check_is_fitted(search, "cv_results_")
        if metric is None and isinstance(getattr(search, "refit", None), str):
            metric = search.refit
        return cls.from_cv_results(search.cv_results_, metric=metric, labels=labels, ax=ax,
                                   **kwargs)

    def plot(self, ax=None, **kwargs) -> SearchResultsDisplay:
        """A row per candidate: mean +- std as an error bar, each fold's score as a dot.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            New figure when None.
        **kwargs
            Passed to ``Axes.errorbar``.

        Returns
        -------
        display : SearchResultsDisplay
        """
        ax, figure = _axes(ax, f"{type(self).__name__}.plot")
        rows = np.arange(len(self.labels))
        self.errorbar_ = ax.errorbar(self.mean, rows, xerr=self.std,
                                     **{"fmt": "o", "capsize": 4, "label": "mean ± std", **kwargs})
        self.scatter_ = ax.scatter(self.split_scores.ravel(),
                                   np.repeat(rows, self.split_scores.shape[1]), marker="|",
                                   s=80, color="grey", label="folds", zorder=3)
        ax.set_yticks(rows, self.labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"mean test {self.metric}")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, figure
        return self
