"""DSSMRecommender: a two-tower model of labelled (user, item) pairs (designs 1 and 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.base import ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EpochScoring
from torch import nn

from ._base import TwoTowerBase
from ._docstrings import fill_shared_parameters
from ._skorch import SAMPLE_WEIGHT, ValidationSplit
from ._utils import check_dataframe
from .losses import binary_cross_entropy, remove_accidental_hits, sampled_softmax_loss
from .utils._sklearn_compat import StrOptions, _check_sample_weight


class PairLoss(nn.Module):
    """Criterion of :class:`DSSMRecommender` over a batch of labelled (user, item) pairs.

    ``"bce"``: binary cross-entropy with logits on every pair (design 2), weighted by
    ``sample_weight``. ``"softmax"``: each positive pair is classified against every item of the
    batch (design 1's cross-entropy over in-batch candidates); the other rows holding the same
    item are not counted as negatives.
    """

    def __init__(self, loss: str = "bce", item_key: str = "item:item_id"):
        super().__init__()
        self.loss = loss
        self.item_key = item_key

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
        if self.loss == "bce":
            return binary_cross_entropy(module.score(user, item), y_true, weight)
        item_ids = X[self.item_key]
        matrix = remove_accidental_hits(module.score_matrix(user[rows], item), item_ids[rows],
                                        item_ids, positive_columns=rows)
        return sampled_softmax_loss(matrix, positive_columns=rows,
                                    weight=None if weight is None else weight[rows])


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
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (stratified), score ROC AUC on them each epoch
        and stop after ``n_iter_no_change`` epochs without improvement, restoring the best weights
        (skorch ``EarlyStopping``).

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
    }

    def __init__(self, user_col="user_id", item_col="item_id", user_features="auto",
                 item_features="auto", sequence_features=None, embedding_dim=32,
                 hidden_dims=(256, 256, 256), item_hidden_dims=None, activation="tanh",
                 batch_norm=False, dropout=0.2, dropout_position="before", init="default",
                 activate_output=False, normalize=True, temperature=0.1, ensemble_size=1,
                 n_heads=2, n_attention_layers=1, max_sequence_length=50, loss="bce", max_epochs=40,
                 batch_size=512, lr=3e-3, optimizer="adam", weight_decay=0.0,
                 early_stopping=True, validation_fraction=0.1, n_iter_no_change=3,
                 refit=False, lr_schedule=None, callbacks=None, id_dropout=0.0,
                 mixed_precision=None, gradient_checkpointing=False, distributed=False, verbose=0,
                 device="cpu", index="auto", random_state=None):
        self._store_params(locals())

    def _check_y(self, X: pd.DataFrame, y) -> np.ndarray:
        if y is None:
            raise ValueError("DSSMRecommender needs y: one binary label per row of X.")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(
                f"y must be 1-D with one label per row of X; got shape {y.shape} for {len(X)} rows."
            )
        if pd.isna(y).any():
            raise ValueError("y contains missing values; every row of X needs a label.")
        target_type = type_of_target(y, input_name="y")
        self.classes_ = np.unique(y)
        if target_type != "binary" or len(self.classes_) != 2:
            raise ValueError(
                f"y must hold exactly two classes (e.g. 0/1 or liked/disliked); got {target_type} "
                f"with classes {self.classes_[:10].tolist()}."
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
        seed = self._seed()
        scoring = [("valid_auc", EpochScoring(_valid_roc_auc, lower_is_better=False,
                                              name="valid_auc", use_caching=True))]
        net = self._make_net(
            PairLoss, self._callbacks("valid_auc", False, scoring), seed,
            ValidationSplit(self.validation_fraction, seed, stratify=True),
        )
        net.set_params(criterion__loss=self.loss, criterion__item_key=f"item:{self.item_col}")
        self._train(net, arrays, target, seed)
        if self._refits():
            return self._refit_on_all_rows(X, y, sample_weight)
        self._fit_catalogue(X)
        self._fit_item_embeddings()
        self._fit_index()
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Logit of each (user, item) row of X: ``cosine / temperature + bias``."""
        check_is_fitted(self)
        X = check_dataframe(X)
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
