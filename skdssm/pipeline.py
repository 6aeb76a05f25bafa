"""A scikit-learn Pipeline that forwards the recommender verbs through its transformers.

:class:`RecommenderPipeline` adds ``predict_topk``, ``kneighbors``, ``similar_items``,
``transform_users``, ``transform_items``, ``index_items``, ``remove_items``,
``export_embeddings``, ``encode_users``, ``encode_items`` and ``export_onnx`` to
:class:`sklearn.pipeline.Pipeline` when its final step has them.

Queries of one side (a frame of users, a frame of items) lack the other side's columns, so
the steps that only prepare the other side cannot run on them. At ``fit`` the pipeline traces,
backwards from the columns the final estimator reads for each tower, which steps modify
columns of that tower; the others are recorded (``item_side_steps_``, ``user_side_steps_``)
and skipped for queries of that side. Skipping them is exact: they pass the columns of the
queried side through untouched, and the final estimator already holds the item catalogue,
encoded through every step, from ``fit``.

A step that modifies columns of both sides (a ``ColumnTransformer`` scaling ``age`` with
``remainder="passthrough"``, which reads every column it saw in fit) is applied to a query of
one side with the other side's columns filled from a row of the fit data; its outputs computed
from those filled columns are dropped again. This is exact when every column the queried tower
reads is computed from the query's own columns only, which the trace checks (a scaler works
column by column; a PCA over user and item columns does not, and raises).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as _sklearn_make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._preprocessing._base import FrameTransformer

__all__ = ["RecommenderPipeline", "make_pipeline"]

_BLOCK = re.compile(r"^(?P<base>.+)\[\d+\]$")

# Transformers whose output column i is computed from input column i alone, so a column of one
# side keeps its fit-time value whatever the other side's columns hold.
_COLUMNWISE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, PowerTransformer,
               QuantileTransformer)


def _final_estimator_has(attr: str):
    def check(self) -> bool:
        # Raises the final step's own AttributeError, which available_if turns into absence.
        getattr(self._final_estimator, attr)
        return True

    return check


def _modified_columns(step, names_in: list, names_out: list) -> set:
    """Output columns of a fitted step whose values may differ from the same-named input column.

    skdssm's frame transformers pass every column they do not encode through unchanged, so only
    their new columns count; a ColumnTransformer modifies the outputs of its transformers other
    than ``"passthrough"``; any other step is assumed to modify all of its outputs.
    """
    if isinstance(step, FrameTransformer):
        return set(names_out) - set(names_in)
    if isinstance(step, ColumnTransformer):
        specs = {name: transformer for name, transformer, _ in step.transformers}
        specs["remainder"] = step.remainder
        return {
            column
            for name, positions in step.output_indices_.items()
            if not (isinstance(specs.get(name), str) and specs[name] in ("passthrough", "drop"))
            for column in names_out[positions]
        }
    return set(names_out)


def _is_passthrough(spec) -> bool:
    return isinstance(spec, str) and spec == "passthrough"


def _output_sources(step, names_in: list, names_out: list) -> dict:
    """The input columns each output column of a fitted step is computed from.

    skdssm's frame transformers pass a column through (itself) or pad it into ``name[i]``
    (from ``name``); a ColumnTransformer's passthrough and column-wise transformers (scalers)
    map each output to its own input column, its other transformers each output to all their
    input columns; any other output depends on every input.
    """
    everything = frozenset(names_in)
    if isinstance(step, FrameTransformer):
        sources = {}
        for column in names_out:
            block = _BLOCK.match(str(column))
            if column in everything:
                sources[column] = {column}
            elif block and block["base"] in everything:
                sources[column] = {block["base"]}
            else:
                sources[column] = everything
        return sources
    if isinstance(step, ColumnTransformer):
        specs = {name: transformer for name, transformer, _ in step.transformers}
        specs["remainder"] = step.remainder
        sources = {}
        for name, _, columns in step.transformers_:
            positions = step.output_indices_.get(name, slice(0, 0))
            outputs = list(np.asarray(names_out, dtype=object)[positions])
            columns = [names_in[c] if isinstance(c, (int, np.integer)) else c
                       for c in np.atleast_1d(np.asarray(columns, dtype=object)).tolist()]
            spec = specs.get(name)
            if (_is_passthrough(spec) or isinstance(spec, _COLUMNWISE)) and len(outputs) == len(
                    columns):
                sources.update({output: {column} for output, column in zip(outputs, columns)})
            else:
                sources.update({output: set(columns) for output in outputs})
        return sources
    return {column: everything for column in names_out}


class RecommenderPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` whose final step is a two-tower recommender.

    Everything :class:`sklearn.pipeline.Pipeline` does is unchanged (``fit``,
    ``predict_proba``, ``score``, ``set_params`` with ``<step>__<param>``, cloning inside
    :class:`~sklearn.model_selection.GridSearchCV`). On top of it, the recommender verbs of the
    final step are available when that step has them: :meth:`predict_topk`, :meth:`kneighbors`,
    :meth:`similar_items`, :meth:`transform_users`, :meth:`transform_items`,
    :meth:`index_items`, :meth:`remove_items`, :meth:`export_embeddings`,
    :meth:`encode_users`, :meth:`encode_items` and :meth:`export_onnx`.

    Their queries pass through the transformers, with one rule: a query of one side skips the
    steps that only prepare the other side. A frame of users (the user id and user feature
    columns, no item column) thus works even when the pipeline pads item genres or scales item
    columns. Which steps those are is traced at ``fit`` from the columns the final estimator
    reads for each tower (see ``item_side_steps_``). An array of ids skips every transformer
    and goes straight to the final step, which looks up the features it stored in fit.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        As in :class:`sklearn.pipeline.Pipeline`; the last one is the recommender
        (:class:`~skdssm.DSSMRecommender` or :class:`~skdssm.TwoTowerRetriever`).
    transform_input : list of str, default=None
        As in :class:`sklearn.pipeline.Pipeline` (metadata routing).
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers, as in :class:`sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        Print the time each step takes to fit.

    Attributes
    ----------
    item_side_steps_ : list of str
        Names of the transformers that leave every user-tower column untouched; frames of
        users skip them. Steps that modify columns skdssm cannot trace (any transformer other
        than skdssm's and :class:`~sklearn.compose.ColumnTransformer`) are never listed.
    user_side_steps_ : list of str
        Names of the transformers that leave every item-tower column untouched; frames of items
        (``transform_items``) skip them.
    named_steps, n_features_in_, feature_names_in_
        As in :class:`sklearn.pipeline.Pipeline`.

    See Also
    --------
    make_pipeline : build a RecommenderPipeline without naming the steps.

    Notes
    -----
    A step that modifies columns of both towers (a ColumnTransformer scaling the user's ``age``
    and the item's ``year``, or one that scales ``age`` with ``remainder="passthrough"``, which
    reads every column it saw in fit) is applied to a users-only frame with the item columns it
    reads filled from a row of the fit data; the outputs computed from them are dropped again,
    so each user column gets exactly its fit-time transform. This holds for column-by-column
    transformers (sklearn's scalers, ``"passthrough"``); a transformer whose outputs mix user and
    item columns (a PCA over both) cannot serve a users-only frame, which then raises a
    ValueError naming the step. Split it into a user-side and an item-side step.

    Coming from :class:`sklearn.pipeline.Pipeline`: this class is a drop-in replacement (same
    constructor, same methods), and so is :func:`make_pipeline` for
    :func:`sklearn.pipeline.make_pipeline`. A plain sklearn Pipeline around a skdssm estimator
    fits and predicts labelled pairs, but has no ``predict_topk``, ``kneighbors``,
    ``transform_users`` or ``transform_items``. Likewise
    :class:`sklearn.model_selection.GridSearchCV` does not forward those methods: use
    :class:`skdssm.model_selection.GridSearchCV` (the same class, forwarding them) or call
    ``search.best_estimator_.predict_topk(...)``.

    Examples
    --------
    >>> from sklearn.compose import ColumnTransformer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skdssm import DSSMRecommender
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm.pipeline import RecommenderPipeline
    >>> from skdssm.preprocessing import MultiHotPadder
    >>> data = make_interactions(n_users=40, n_items=30, interactions_per_user=8, random_state=0)
    >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
    >>> scale = ColumnTransformer([("price", StandardScaler(), ["price"])],
    ...                           remainder="passthrough", verbose_feature_names_out=False)
    >>> pipe = RecommenderPipeline([
    ...     ("padder", MultiHotPadder(columns=["tags"], max_len=3)),
    ...     ("scale", scale.set_output(transform="pandas")),
    ...     ("model", DSSMRecommender(hidden_dims=(16, 8), embedding_dim=4, max_epochs=2,
    ...                               early_stopping=False, random_state=0)),
    ... ]).fit(X, y)
    >>> pipe.item_side_steps_
    ['padder', 'scale']
    >>> users = data.users[["user_id", "segment", "age_group", "activity"]].head(3)
    >>> pipe.predict_topk(users, k=5).shape
    (3, 5)
    """

    def fit(self, X, y=None, **params) -> RecommenderPipeline:
        """Fit the transformers and the final estimator, then trace each tower's steps.

        Parameters
        ----------
        X : DataFrame
            Interaction rows, as the first step expects them.
        y : array-like of shape (n_samples,), default=None
            Labels, passed to the final estimator.
        **params : dict of str -> object
            ``<step>__<param>`` fit parameters, as in :meth:`sklearn.pipeline.Pipeline.fit`.

        Returns
        -------
        self
        """
        super().fit(X, y, **params)
        self.item_side_steps_, user_needs = self._trace("user", X)
        self.user_side_steps_, item_needs = self._trace("item", X)
        self._query_needs_ = {"user": user_needs, "item": item_needs}
        self._fill_rows_ = self._step_inputs(X.iloc[:1]) if isinstance(X, pd.DataFrame) else {}
        return self

    def _trace(self, side: str, X) -> tuple[list, dict]:
        """The transformers that leave every column the final estimator reads for ``side``
        untouched, and for each other one the columns of its output that ``side`` reads."""
        encoder = getattr(self._final_estimator, "feature_encoder_", None)
        if encoder is None:
            return [], {}
        names_in = list(X.columns) if isinstance(X, pd.DataFrame) else None
        lineage = []
        for _, name, step in self._iter(with_final=False):
            if names_in is None or not hasattr(step, "get_feature_names_out"):
                # Without column names nothing can be traced: every step is kept for both sides.
                return [], {}
            names_out = list(step.get_feature_names_out(names_in))
            lineage.append((name, _modified_columns(step, names_in, names_out),
                            _output_sources(step, names_in, names_out)))
            names_in = names_out
        needed = set(encoder.required_columns(side))
        skipped, needs = [], {}
        for name, modified, sources in reversed(lineage):
            if needed.isdisjoint(modified):
                skipped.append(name)
            else:
                needs[name] = needed
                needed = set().union(*(sources.get(column, {column}) for column in needed))
        return skipped[::-1], needs

    def _step_inputs(self, rows: pd.DataFrame) -> dict:
        """What each transformer received for ``rows`` of the fit data, by step name."""
        inputs = {}
        for _, name, step in self._iter(with_final=False):
            if not isinstance(rows, pd.DataFrame):
                break
            inputs[name] = rows
            try:
                rows = step.transform(rows)
            except (KeyError, TypeError, ValueError):
                # A step that cannot transform a single row leaves the later steps without a
                # fill row: frames of one side then need every column those steps read.
                break
        return inputs

    def _complete_query(self, name: str, step, query: pd.DataFrame, side: str):
        """The query with the step's other-side input columns filled from a fit row, and the
        names of the outputs computed from those filled columns (to drop after the step).

        Raises a ValueError when a column the ``side`` tower reads would be computed from a
        filled column: its value would then be made up rather than the query's.
        """
        names_in = [str(c) for c in getattr(step, "feature_names_in_", [])]
        missing = [c for c in names_in if c not in query.columns]
        needs = self._query_needs_.get(side, {}).get(name)
        if not missing or needs is None or name not in self._fill_rows_:
            return query, []
        names_out = [str(c) for c in step.get_feature_names_out()]
        sources = _output_sources(step, names_in, names_out)
        everything = set(names_in)
        tainted = [c for c in names_out if not sources.get(c, everything).isdisjoint(missing)]
        # A needed column the query lacks and the step merely passes on stays missing (it is
        # dropped again below): whichever step or estimator reads it says so.
        wrong = sorted(c for c in set(tainted) & needs if sources.get(c, everything) != {c})
        if wrong:
            raise ValueError(
                f"Step {name!r} of the pipeline computes the {side}-tower column(s) {wrong} from "
                f"columns the frame of {side}s lacks ({sorted(missing)}), so it cannot transform "
                f"a frame of {side}s. Split the step so that a {side}-side transformer reads "
                f"{side} columns only (e.g. one ColumnTransformer entry for the user columns and "
                f"one for the item columns), or pass an array of {side} ids."
            )
        fill = self._fill_rows_[name].iloc[np.zeros(len(query), dtype=np.intp)][missing]
        extras = [c for c in query.columns if c not in names_in]
        completed = pd.concat([query, fill.set_axis(query.index)], axis=1)
        return completed[names_in + extras], tainted

    def _transform_query(self, query, side: str):
        """Pass a frame of ``side`` rows through the steps that prepare ``side``; ids pass as is."""
        if not isinstance(query, pd.DataFrame):
            return query
        skipped = self.item_side_steps_ if side == "user" else self.user_side_steps_
        for _, name, step in self._iter(with_final=False):
            if name in skipped:
                continue
            query, filled_outputs = self._complete_query(name, step, query, side)
            try:
                query = step.transform(query)
            except (KeyError, ValueError) as exc:
                raise ValueError(
                    f"Step {name!r} of the pipeline modifies columns the {side} tower reads but "
                    f"could not transform the frame of {side}s: {exc}. The frame must hold every "
                    f"column this step reads; split the step into a {side}-side one and one for "
                    f"the other side, or pass an array of {side} ids."
                ) from exc
            if filled_outputs and isinstance(query, pd.DataFrame):
                query = query.drop(columns=[c for c in filled_outputs if c in query.columns])
        return query

    @available_if(_final_estimator_has("predict_topk"))
    def predict_topk(self, users, k: int = 10, **params):
        """Ids of the ``k`` best catalogue items for each user, from the final step.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            Ids go straight to the final step (which uses the features it stored in fit). A
            DataFrame holds the user id and user feature columns as they enter the pipeline (item
            columns are not needed); it passes through the steps that modify user-tower columns.
        k : int, default=10
            Number of items per user.
        **params : dict
            Other arguments of the final step's ``predict_topk`` (``exclude_seen``,
            ``return_scores``, ``fill_value``, ``history``, ``candidates``, ``exclude_items``).
            ``history`` (the users' own interactions: user id, item id and time columns) and
            ``exclude_items`` (ids, or user id / item id rows) go to the final step as is.

        Returns
        -------
        item_ids : ndarray of shape (n_users, k)
            And the scores when ``return_scores=True``.
        """
        check_is_fitted(self)
        return self._final_estimator.predict_topk(self._transform_query(users, "user"), k=k,
                                                  **params)

    @available_if(_final_estimator_has("kneighbors"))
    def kneighbors(self, X=None, *args, **params):
        """The final step's ``kneighbors``; a DataFrame ``X`` is a frame of users.

        Parameters
        ----------
        X : array-like of user ids, DataFrame or None, default=None
            The queries, prepared as in :meth:`predict_topk`; None is passed on unchanged.
        *args, **params
            Other arguments of the final step's ``kneighbors`` (``n_neighbors``,
            ``return_distance``, ...).

        Returns
        -------
        Whatever the final step's ``kneighbors`` returns.
        """
        check_is_fitted(self)
        return self._final_estimator.kneighbors(self._transform_query(X, "user"), *args, **params)

    @available_if(_final_estimator_has("transform_users"))
    def transform_users(self, users, history=None):
        """User-tower embeddings from the final step.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As in :meth:`predict_topk`.
        history : DataFrame, default=None
            The users' interactions, passed to the final step as is (see
            :meth:`TwoTowerRetriever.transform_users`).

        Returns
        -------
        ndarray of shape (n_users, embedding_size)
        """
        check_is_fitted(self)
        params = {} if history is None else {"history": history}
        return self._final_estimator.transform_users(self._transform_query(users, "user"), **params)

    @available_if(_final_estimator_has("transform_items"))
    def transform_items(self, items=None):
        """Item-tower embeddings from the final step.

        Parameters
        ----------
        items : array-like of item ids, DataFrame or None, default=None
            None gives the fitted catalogue; ids go straight to the final step; a DataFrame holds
            the item id and item feature columns as they enter the pipeline (no user column) and
            passes through the steps that modify item-tower columns.

        Returns
        -------
        ndarray of shape (n_items, embedding_size)
        """
        check_is_fitted(self)
        return self._final_estimator.transform_items(self._transform_query(items, "item"))


    @available_if(_final_estimator_has("similar_items"))
    def similar_items(self, items, k: int = 10, **params):
        """The ``k`` catalogue items nearest to each query item, from the final step.

        Parameters
        ----------
        items : array-like of item ids, or DataFrame
            Ids go straight to the final step. A DataFrame holds the item id and item feature
            columns as they enter the pipeline (no user column), so a new item can be described
            by its raw features; it passes through the steps that modify item-tower columns.
        k : int, default=10
            Number of items per query item.
        **params : dict
            Other arguments of the final step's ``similar_items`` (``return_scores``,
            ``fill_value``).

        Returns
        -------
        item_ids : ndarray of shape (n_items, k)
            And the scores when ``return_scores=True``.
        """
        check_is_fitted(self)
        return self._final_estimator.similar_items(self._transform_query(items, "item"), k=k,
                                                   **params)

    @available_if(_final_estimator_has("index_items"))
    def index_items(self, items) -> RecommenderPipeline:
        """Embed new or changed items with the final step's item tower and add them to its index.

        Parameters
        ----------
        items : DataFrame
            One row per item: the item id and item feature columns as they enter the pipeline
            (raw, e.g. ``"Action|Drama"`` genres for a padder step; no user column). They pass
            through the steps that modify item-tower columns, then to the final step's
            ``index_items``.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        self._final_estimator.index_items(self._transform_query(items, "item"))
        return self

    @available_if(_final_estimator_has("remove_items"))
    def remove_items(self, ids) -> RecommenderPipeline:
        """Stop recommending the items ``ids`` (the final step's ``remove_items``).

        Parameters
        ----------
        ids : array-like of item ids
            Items of the final step's catalogue; :meth:`index_items` brings them back.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        self._final_estimator.remove_items(ids)
        return self

    @available_if(_final_estimator_has("export_embeddings"))
    def export_embeddings(self, path) -> None:
        """Write the final step's user and item embeddings with their ids (``.npz`` or
        ``.parquet``; see the final step's ``export_embeddings``).

        Parameters
        ----------
        path : str or path-like
            Destination ending in ``.npz`` or ``.parquet``.
        """
        check_is_fitted(self)
        self._final_estimator.export_embeddings(path)


    @available_if(_final_estimator_has("encode_users"))
    def encode_users(self, users, history=None) -> dict:
        """The user tower's inputs for ``users``, after the steps that prepare user columns.

        A frame of users passes through the steps that modify user-tower columns, exactly as in
        :meth:`transform_users`; then the final step's ``encode_users`` turns it into the
        arrays the user tower (and the exported ``user_tower.onnx``, :meth:`export_onnx`)
        consumes. This is how a Python service feeds the ONNX graph raw user rows.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As in :meth:`predict_topk`: ids go straight to the final step, a frame of users
            (raw columns as they enter the pipeline, no item column) through the user-side steps.
        history : DataFrame, default=None
            The users' interactions, passed to the final step as is (see
            :meth:`TwoTowerRetriever.encode_users`).

        Returns
        -------
        inputs : dict of str to ndarray
            Keyed ``"user:<feature>"``, as the final step's ``encode_users`` returns them.

        Examples
        --------
        >>> from skdssm import DSSMRecommender
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm.pipeline import RecommenderPipeline
        >>> from skdssm.preprocessing import MultiHotPadder
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
        ...                          random_state=0)
        >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
        >>> pipe = RecommenderPipeline([
        ...     ("padder", MultiHotPadder(columns=["tags"], max_len=3)),
        ...     ("model", DSSMRecommender(hidden_dims=(16,), max_epochs=1, random_state=0)),
        ... ]).fit(X, y)
        >>> users = data.users[["user_id", "segment", "age_group", "activity"]].head(2)
        >>> {key: value.shape for key, value in pipe.encode_users(users).items()}
        {'user:user_id': (2,), 'user:segment': (2,), 'user:age_group': (2,), 'user:dense': (2, 1)}
        """
        check_is_fitted(self)
        params = {} if history is None else {"history": history}
        return self._final_estimator.encode_users(self._transform_query(users, "user"), **params)

    @available_if(_final_estimator_has("encode_items"))
    def encode_items(self, items) -> dict:
        """The item tower's inputs for ``items``, after the steps that prepare item columns.

        A frame of items passes through the steps that modify item-tower columns, exactly as in
        :meth:`transform_items` (raw ``"A|B"`` genres are padded by a padder step, a numeric
        column scaled by a ColumnTransformer); then the final step's ``encode_items`` turns it
        into the arrays the item tower (and the exported ``item_tower.onnx``) consumes.

        Parameters
        ----------
        items : array-like of item ids, or DataFrame
            Ids go straight to the final step (the features seen in fit); a frame holds the
            item id and item feature columns as they enter the pipeline (no user column).

        Returns
        -------
        inputs : dict of str to ndarray
            Keyed ``"item:<feature>"``, as the final step's ``encode_items`` returns them.

        Examples
        --------
        >>> from skdssm import DSSMRecommender
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm.pipeline import RecommenderPipeline
        >>> from skdssm.preprocessing import MultiHotPadder
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
        ...                          random_state=0)
        >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
        >>> pipe = RecommenderPipeline([
        ...     ("padder", MultiHotPadder(columns=["tags"], max_len=3)),
        ...     ("model", DSSMRecommender(hidden_dims=(16,), max_epochs=1, random_state=0)),
        ... ]).fit(X, y)
        >>> pipe.encode_items(data["items"].head(2))["item:tags"].shape
        (2, 3)
        """
        check_is_fitted(self)
        return self._final_estimator.encode_items(self._transform_query(items, "item"))

    @available_if(_final_estimator_has("export_onnx"))
    def export_onnx(self, directory) -> None:
        """Write the final step's towers as ONNX graphs (see the final step's ``export_onnx``).

        The graphs cover the towers only. The pipeline's preprocessing steps (a
        :class:`~skdssm.preprocessing.MultiHotPadder`, a ColumnTransformer's scaler, any other
        transformer) are not in them, and neither is ``vocabularies.json``'s encoding: a service
        must apply those steps to the raw rows before encoding them into the graphs' inputs,
        or, in Python, call :meth:`encode_users` / :meth:`encode_items` on the pipeline, which
        run the steps and the encoding, and feed the graph what they return.

        Parameters
        ----------
        directory : str or path-like
            Created if needed; receives ``user_tower.onnx``, ``item_tower.onnx`` and
            ``vocabularies.json``, as the final step writes them.

        Notes
        -----
        Needs the ``onnx`` extra (``pip install skdssm[onnx]``).
        """
        check_is_fitted(self)
        self._final_estimator.export_onnx(directory)


def make_pipeline(*steps, memory=None, transform_input=None, verbose=False) -> RecommenderPipeline:
    """Build a :class:`RecommenderPipeline`, naming each step after its lower-cased class.

    A drop-in replacement for :func:`sklearn.pipeline.make_pipeline` (same arguments, same
    step names) whose result also has the recommender verbs of its final step.

    Parameters
    ----------
    *steps : list of estimators
        Transformers, then the recommender.
    memory : str or object with the joblib.Memory interface, default=None
    transform_input : list of str, default=None
    verbose : bool, default=False
        As in :func:`sklearn.pipeline.make_pipeline`.

    Returns
    -------
    RecommenderPipeline

    Examples
    --------
    >>> from skdssm import DSSMRecommender
    >>> from skdssm.pipeline import make_pipeline
    >>> from skdssm.preprocessing import MultiHotPadder
    >>> pipe = make_pipeline(MultiHotPadder(columns=["tags"]), DSSMRecommender())
    >>> [name for name, _ in pipe.steps]
    ['multihotpadder', 'dssmrecommender']
    """
    named = _sklearn_make_pipeline(*steps, memory=memory, transform_input=transform_input,
                                   verbose=verbose)
    return RecommenderPipeline(named.steps, memory=memory, transform_input=transform_input,
                               verbose=verbose)
