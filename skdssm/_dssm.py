"""DSSMRecommender: a two-tower model of labelled (user, item) pairs."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch.callbacks import EpochScoring
from torch import nn

from ._base import TwoTowerBase
from ._docstrings import fill_shared_parameters
from ._features import ITEM_LOG_Q, ITEM_POSITION, N_RESERVED
from ._skorch import SAMPLE_WEIGHT, ValidationSplit
from .losses import (
    binary_cross_entropy,
    remove_accidental_hits,
    retrieval_softmax_loss,
    sampled_softmax_loss,
)
from .utils._sklearn_compat import Interval, StrOptions, _check_sample_weight


class PairLoss(nn.Module):
    """Criterion of :class:`DSSMRecommender` over a batch of labelled (user, item) pairs.

    ``"bce"``: binary cross-entropy with logits on every pair, weighted by ``sample_weight``.
    ``"softmax"``: each positive pair is classified against every item of the batch (in-batch
    cross-entropy); the other rows holding the same item are not counted as negatives.

    ``ranking_weight > 0`` adds a ranking term: each positive pair against every item of the batch,
    with the logQ correction of in-batch sampling (``log_q`` of a column is its item's share of the
    training rows) and the rows holding the same item masked (:func:`retrieval_softmax_loss`).
    It teaches the towers rated-and-liked versus the rest of the catalogue, which the labelled
    pairs alone never show them.
    """

    def __init__(self, loss: str = "bce", ranking_weight: float = 0.0):
        super().__init__()
        self.loss = loss
        self.ranking_weight = ranking_weight

    def forward(self, y_pred, y_true, X, module) -> torch.Tensor:
        logits, user, item, _ = y_pred
        weight = X.get(SAMPLE_WEIGHT)
        rows = torch.nonzero(y_true > 0.5).squeeze(1)
        if self.loss == "softmax" and len(rows) == 0:
            return logits.sum() * 0.0
        # Ensemble members (module.ensemble_size > 1) each learn from their own loss.
        losses = [self._member_loss(module, member_user, member_item, rows, y_true, X, weight)
                  for member_user, member_item in zip(module.members(user), module.members(item))]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _member_loss(self, module, user, item, rows, y_true, X, weight) -> torch.Tensor:
        item_ids = X[ITEM_POSITION]
        if self.loss == "bce":
            loss = binary_cross_entropy(module.score(user, item) + module.pair_offsets(X), y_true,
                                        weight)
        else:
            matrix = remove_accidental_hits(module.score_matrix(user[rows], item), item_ids[rows],
                                            item_ids, positive_columns=rows)
            loss = sampled_softmax_loss(matrix, positive_columns=rows,
                                        weight=None if weight is None else weight[rows])
        if self.ranking_weight > 0 and len(rows) > 0:
            # The positives first, so that row i's own item is column i (the diagonal).
            columns = torch.cat([rows, torch.nonzero(y_true <= 0.5).squeeze(1)])
            ranking = retrieval_softmax_loss(
                module.score_matrix(user[rows], item[columns]), item_ids[rows],
                item_ids[columns], log_q=X[ITEM_LOG_Q][columns],
                weight=None if weight is None else weight[rows])
            loss = loss + self.ranking_weight * ranking
        return loss


def _valid_roc_auc(net, X, y) -> float:
    """ROC AUC of the validation rows (skorch caches the logits of the validation pass)."""
    return roc_auc_score(y, net.forward_logits(X))


@fill_shared_parameters
class DSSMRecommender(ClassifierMixin, TwoTowerBase):
    """Two-tower (DSSM) model of labelled (user, item) pairs, trained through skorch.

    X is a DataFrame with one row per (user, item) pair: the id columns and feature columns. Each
    column goes to the user or the item tower (``"auto"``: constant within each user id -> user
    feature, within each item id -> item feature) and is encoded by dtype: strings, categoricals and
    integer codes are embedded (vocabulary learned in fit; unseen values map to an
    out-of-vocabulary slot, never an error); floats go through a dense branch (Linear + ReLU);
    list cells (genres) and padded blocks ``name[0..L-1]`` are multi-valued features, embedded and
    mean-pooled with the padding masked; ``sequence_features`` (the user's behaviour as item ids)
    go through self-attention. The parts of a tower are concatenated, LayerNorm-ed and passed
    through an MLP; outputs are L2-normalised and a pair's logit is their cosine divided by
    ``temperature`` (plus a learned global bias).

    Parameters
    ----------
    %(shared_parameters)s
    loss : {"bce", "softmax"}, default="bce"
        ``"bce"``: BCE with logits on each pair. ``"softmax"``: cross-entropy of each positive pair
        against the other items in the batch.
    ranking_weight : float, default=1.0
        Weight of a ranking term added to ``loss``: each positive pair (label ``classes_[1]``) is
        classified against every item of its batch, with the logQ correction of in-batch sampling
        (a column's log q is the log of its item's share of the training rows) and the rows
        holding the same item masked. The labelled pairs alone teach liked versus disliked among
        *rated* items; ranking the whole catalogue (:meth:`predict_topk`, :meth:`kneighbors`)
        also needs liked versus everything else, which this term supplies, sharing the towers.
        ``0`` trains on the labelled pairs only (the model of earlier versions): its
        ``predict_proba`` is as good, but its top-k favours items with few, high ratings and
        ranks worse than popularity (benchmarks/RESULTS.md section 13).
    id_biases : bool, default=True
        Add a learned bias per user id and per item id to a pair's logit, as matrix factorisation
        with biases does: they absorb how generous a user is and how well liked an item is, which
        is most of what separates liked from disliked pairs, so that the embeddings need not
        encode it. They enter :meth:`decision_function` and :meth:`predict_proba` only;
        :meth:`predict_topk` and :meth:`kneighbors` rank by the embeddings.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (stratified), score them each epoch and stop
        after ``n_iter_no_change`` epochs without improvement, restoring the best weights (skorch
        ``EarlyStopping``). With ``ranking_weight > 0`` the watched score is the validation loss
        (the labelled-pair loss plus the ranking term: both jobs); with ``ranking_weight=0`` it
        is the validation ROC AUC. ``history_`` records both. The ranking keeps improving long
        after the ROC AUC has flattened, which is why the AUC alone is not watched.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the positive one.
    net_ : skorch.NeuralNet
        The fitted net (``net_.module_`` holds the towers).
    history_ : skorch.History
        Per-epoch losses and validation AUC.
    best_epoch_ : int or None
        The epoch early stopping restored (None without early stopping).
    validation_history_ : skorch.History or None
        With ``refit=True``, the history of the early-stopped run that chose ``best_epoch_``.
    n_features_in_, feature_names_in_
        Columns of the X passed to fit.
    user_ids_, item_ids_ : ndarray
        Users and items seen in fit; ``item_ids_`` is the catalogue ranked by ``predict_topk``.
    item_embeddings_ : ndarray of shape (n_items, embedding_size)
    seen_items_ : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The pairs of X (rows aligned with ``user_ids_``, columns with ``item_ids_``).
    feature_encoder_ : object
        Column roles, kinds and vocabularies learned in fit.
    index_ : ExactIndex or HNSWIndex
        Index over ``item_embeddings_`` (rows aligned with ``item_ids_``); pickles with the
        estimator. ``index_.recall_`` is the recall@10 measured when it was tuned.

    Notes
    -----
    The defaults (Tanh ``hidden_dims=(256, 256, 256)``, dropout 0.2 before each Linear, lr 3e-3,
    batch 512, at most 40 epochs with early stopping on validation AUC) were chosen on
    MovieLens-100K validation data (benchmarks/RESULTS.md).

    Examples
    --------
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm import DSSMRecommender
    >>> data = make_interactions(n_users=60, n_items=40, random_state=0)
    >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
    >>> model = DSSMRecommender(hidden_dims=(32, 16), max_epochs=2, random_state=0).fit(X, y)
    >>> model.predict_topk([1, 2], k=3).shape
    (2, 3)
    """

    _parameter_constraints: dict = {
        **TwoTowerBase._parameter_constraints,
        "loss": [StrOptions({"bce", "softmax"})],
        "ranking_weight": [Interval(Real, 0, None, closed="left")],
        "id_biases": ["boolean"],
    }

    def __init__(self, user_col="user_id", item_col="item_id", user_features="auto",
                 item_features="auto", sequence_features=None, embedding_dim=32,
                 hidden_dims=(256, 256, 256), item_hidden_dims=None, activation="tanh",
                 batch_norm=False, dropout=0.2, dropout_position="before", init="default",
                 activate_output=False, normalize=True, temperature=0.1, ensemble_size=1,
                 n_heads=2, n_attention_layers=1, max_sequence_length=50, loss="bce",
                 ranking_weight=1.0, id_biases=True, max_epochs=40, batch_size=512, lr=3e-3,
                 optimizer="adam", weight_decay=0.0, early_stopping=True, validation_fraction=0.05,
                 n_iter_no_change=3, refit=False, lr_schedule=None, callbacks=None, id_dropout=0.0,
                 mixed_precision=None, gradient_checkpointing=False, distributed=False, verbose=0,
                 device="cpu", index="auto", random_state=None):
        self._store_params(locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # two labels only
        return tags

    def _check_y(self, X: pd.DataFrame, y) -> np.ndarray:
        if y is None:
            raise ValueError("DSSMRecommender requires y to be passed, but the target y is "
                             "None: it needs y, one binary label per row of X.")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # a column vector, as sklearn's classifiers take it
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(
                f"y must be 1-D with one label per row of X; got shape {y.shape} for {len(X)} rows."
            )
        if pd.isna(y).any():
            raise ValueError("y contains missing values; every row of X needs a label.")
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        self.classes_ = np.unique(y)
        if target_type != "binary" or len(self.classes_) != 2:
            raise ValueError(
                "Only binary classification is supported: y must hold exactly two classes (e.g. "
                f"0/1 or liked/disliked); got {target_type} y with {len(self.classes_)} class(es): classes {self.classes_[:10].tolist()}."
            )
        return (y == self.classes_[1]).astype(np.float32)

    def fit(self, X: pd.DataFrame, y, sample_weight=None) -> DSSMRecommender:
        """Learn vocabularies and both towers from labelled pairs.

        Parameters
        ----------
        X : DataFrame of shape (n_pairs, n_columns)
            One row per (user, item) pair: ``user_col``, ``item_col`` and feature columns.
        y : array-like of shape (n_pairs,)
            Binary labels (any two classes; ``classes_[1]`` counts as positive).
        sample_weight : array-like of shape (n_pairs,), default=None
            Per-pair weights of the loss.

        Returns
        -------
        self
        """
        X = self._start_fit(X)
        target = self._check_y(X, y)
        self._record_input(X)
        arrays = self._fit_encoder(X)
        if sample_weight is not None:
            arrays[SAMPLE_WEIGHT] = _check_sample_weight(sample_weight, X, dtype=np.float32)
        arrays.update(self._item_columns(arrays))
        seed = self._seed()
        scoring = [("valid_auc", EpochScoring(_valid_roc_auc, lower_is_better=False,
                                              name="valid_auc", use_caching=True))]
        # With the ranking term the validation loss holds both jobs (labelled pairs and ranking);
        # the labelled pairs alone are judged by their ROC AUC.
        monitor = ("valid_loss", True) if self.ranking_weight > 0 else ("valid_auc", False)
        net = self._make_net(
            PairLoss, self._callbacks(*monitor, scoring), seed,
            ValidationSplit(self.validation_fraction, seed, stratify=True),
        )
        net.set_params(criterion__loss=self.loss, criterion__ranking_weight=self.ranking_weight)
        self._train(net, arrays, target, seed)
        if self._refits():
            return self._refit_on_all_rows(X, y, sample_weight)
        self._fit_catalogue(X)
        self._fit_item_embeddings()
        self._fit_index()
        return self

    def _module_params(self) -> dict:
        params = super()._module_params()
        if self.id_biases:
            schemas = {"user": params["user_schema"], "item": params["item_schema"]}
            params["id_biases"] = {
                f"{side}:{name}": schemas[side].categorical[name]
                for side, name in (("user", self.user_col), ("item", self.item_col))
                if name in schemas[side].categorical}
        return params

    def _item_columns(self, arrays: dict) -> dict:
        """Each row's catalogue position (from the item id codes the encoder wrote) and the log of
        its item's share of the rows: the ids and the in-batch sampling probabilities the
        criterion's softmax terms need."""
        positions = arrays[f"item:{self.item_col}"] - N_RESERVED
        share = np.bincount(positions) / len(positions)
        return {ITEM_POSITION: positions.astype(np.int64),
                ITEM_LOG_Q: np.log(share[positions]).astype(np.float32)}

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Logit of each (user, item) row of X: ``cosine / temperature + bias``."""
        check_is_fitted(self)
        X = self._check_X(X)
        return self.net_.forward_logits(self._encode_pairs(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of each class for each row of X (sigmoid of the logit).

        The probabilities are calibrated by training only with ``loss="bce"``; with
        ``loss="softmax"`` they order pairs well but their level is arbitrary.
        """
        positive = 1.0 / (1.0 + np.exp(-self.decision_function(X).astype(np.float64)))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Most likely class of each row of X."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
