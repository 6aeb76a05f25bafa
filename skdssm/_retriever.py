"""TwoTowerRetriever: implicit-feedback retrieval with sampled negatives."""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback
from torch import nn

from ._base import TwoTowerBase, embed
from ._distributed import rank_seed
from ._docstrings import fill_shared_parameters
from ._features import (
    CANDIDATE_LOG_Q,
    CANDIDATE_POSITION,
    HISTORY,
    HISTORY_BAG,
    HISTORY_END,
    ITEM_POSITION,
    KNOWN_POSITIVE,
    LEAVE_ONE_OUT,
    N_RESERVED,
    OFFSETS,
    PROFILE,
    USER_LOG_Q,
    USER_POSITION,
    FeatureEncoder,
)
from ._history import UserHistories, UserInputs, UserProfiles
from ._preprocessing._history import _time_values
from ._skorch import SAMPLE_WEIGHT, Compose, DrawCandidates, FixedSplit
from ._sparse import check_side_frames, interactions_from_sparse
from ._utils import check_columns, check_dataframe, check_generator
from .losses import bce_loss, bpr_loss, infonce_loss, retrieval_softmax_loss, split_logits
from .metrics import make_topk_scorer, recall_at_k
from .neighbors import exact_topk
from .model_selection import user_holdout_rows
from .sampling import SAMPLERS, NegativeSampler, make_sampler
from .utils._sklearn_compat import Interval, StrOptions, _check_sample_weight

class RetrievalCriterion(nn.Module):
    """Criterion of :class:`TwoTowerRetriever`: scores each positive against its negatives.

    The module has embedded the batch's users, its positive items and the sampled candidates
    (the batch loader drew them, with their log q and the known-positive mask: see
    :class:`~skdssm._skorch.DrawCandidates`); this turns embeddings into the model's scores and
    hands scores, log q and ids to the loss functions of :mod:`skdssm.losses`.

    - ``"softmax"``: every candidate column (the batch's items, then every draw) competes with
      the row's positive (:func:`~skdssm.losses.retrieval_softmax_loss`). With ``symmetric``
      the item-to-user direction is added: each batch item must pick its own user out of the
      batch's users (logQ-corrected by user frequency; the same user in another column and
      users who know the item as a positive are masked), as in CLIP's symmetric loss.
    - ``"infonce"``, ``"bpr"``, ``"bce"``: each positive against its own negatives (its draws,
      and the other batch items when ``in_batch``); ``"bce"`` also takes explicit negatives
      (rows labelled 0).
    """

    def __init__(self, loss="softmax", symmetric=False, in_batch=True):
        super().__init__()
        self.loss = loss
        self.symmetric = symmetric
        self.in_batch = in_batch

    def forward(self, y_pred, y_true, X, module) -> torch.Tensor:
        _, user, item, drawn = y_pred
        # Ensemble members (module.ensemble_size > 1) each learn from their own loss.
        drawn_members = (module.members(drawn) if drawn is not None and len(drawn)
                         else [None] * module.ensemble_size)
        losses = [self._member_loss(module, *embeddings, X, y_true) for embeddings in
                  zip(module.members(user), module.members(item), drawn_members)]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _member_loss(self, module, user, item, drawn, X, y_true) -> torch.Tensor:
        if self.loss == "softmax":
            return self._softmax(module, user, item, drawn, X)
        return self._pairwise(module, user, item, drawn, X, y_true)

    def _softmax(self, module, user, item, drawn, X) -> torch.Tensor:
        weight, items, known = X.get(SAMPLE_WEIGHT), X[ITEM_POSITION], X.get(KNOWN_POSITIVE)
        candidates, candidate_ids = item, items
        if drawn is not None:
            candidates = torch.cat([item, drawn])
            candidate_ids = torch.cat([items, X[CANDIDATE_POSITION]])
        scores = module.score_matrix(user, candidates)
        total = retrieval_softmax_loss(scores, items, candidate_ids, log_q=X.get(CANDIDATE_LOG_Q),
                                       known_mask=known, weight=weight)
        if self.symmetric:
            # Item-to-user scores are the transpose of the batch block of the user-to-item
            # ones (the score is symmetric in its two embeddings): no second product.
            users = X[USER_POSITION]
            total = total + retrieval_softmax_loss(
                scores[:, : len(users)].T, users, users, log_q=X.get(USER_LOG_Q),
                known_mask=None if known is None else known[:, : len(users)].T, weight=weight)
        return total

    def _pairwise(self, module, user, item, drawn, X, y_true) -> torch.Tensor:
        weight = X.get(SAMPLE_WEIGHT)
        negatives, masks = [], []
        if self.in_batch:
            items = X[ITEM_POSITION]
            batch_mask = items[:, None] == items[None, :]
            if KNOWN_POSITIVE in X:
                batch_mask = batch_mask | X[KNOWN_POSITIVE]
            positive, in_batch, in_batch_mask = split_logits(
                module.score_matrix(user, item), mask=batch_mask)
            negatives.append(in_batch)
            masks.append(in_batch_mask)
        else:
            positive = module.score(user, item)
        if drawn is not None:
            scores = module.score_matrix(user, drawn.view(len(user), -1, drawn.shape[-1]))
            negatives.append(scores)
            masks.append(torch.zeros_like(scores, dtype=torch.bool))
        negatives, negative_mask = torch.cat(negatives, dim=1), torch.cat(masks, dim=1)
        if self.loss == "infonce":
            return infonce_loss(positive, negatives, negative_mask, weight)
        if self.loss == "bpr":
            return bpr_loss(positive, negatives, negative_mask, weight)
        # bce: own pairs with their labels (explicit negatives are 0), plus the sampled
        # negatives of the positive rows.
        return bce_loss(positive, negatives, negative_mask, weight, labels=y_true)


class HeldOutRecall:
    """``module -> Recall@k`` of held-out positives, ranking the whole catalogue minus each
    user's training positives.

    A class rather than a closure: the fitted net keeps its callbacks, so the estimator must
    stay picklable.
    """

    def __init__(self, user_inputs: dict, item_inputs: dict, relevant: sp.csr_matrix,
                 seen: sp.csr_matrix, k: int, device, transform=None):
        self.user_inputs = user_inputs
        self.item_inputs = item_inputs
        self.relevant = relevant
        self.seen = seen
        self.k = k
        self.device = device
        self.transform = transform

    def __call__(self, module) -> float:
        items = embed(module.item_tower, self.item_inputs, self.device)
        queries = embed(module.user_tower, self.user_inputs, self.device, self.transform)
        _, top = exact_topk(queries, items, self.k, exclude=self.seen)
        return recall_at_k(self.relevant, top, k=self.k)


class FullRankingRecall(Callback):
    """Record Recall@k of held-out interactions, ranking the whole catalogue, after each epoch.

    ``evaluate(module) -> float`` is built by the estimator (it knows the held-out users, their
    relevant items and the training positives to exclude). The value is written to the history
    under ``name`` (and ``name + "_best"``), where skorch's EarlyStopping and PrintLog read it.
    """

    def __init__(self, evaluate, name="valid_recall_at_10"):
        self.evaluate = evaluate
        self.name = name

    def on_train_begin(self, net, **kwargs):
        self.best_ = -np.inf

    def on_epoch_end(self, net, **kwargs):
        # Serving embeds in evaluation mode; the next training step switches back.
        net.module_.eval()
        score = float(self.evaluate(net.module_))
        net.history.record(self.name, score)
        net.history.record(self.name + "_best", score > self.best_)
        self.best_ = max(self.best_, score)


@fill_shared_parameters
class TwoTowerRetriever(TwoTowerBase):
    """Two-tower retrieval model trained on positive interactions only, with sampled negatives.

    X holds one row per positive interaction (user id, item id, feature columns, optionally a
    timestamp); the model learns to rank each user's items above the rest of the catalogue and is
    judged by full-ranking Recall/NDCG@k. Towers, feature handling and training machinery are those
    of :class:`DSSMRecommender` (see its parameters); the parameters below are specific.

    Parameters
    ----------
    %(shared_parameters)s
    time_col : str, default="timestamp"
        Event time; used to build behaviour histories (``user_representation="sequence"``) and
        never used as a feature.
    user_representation : {"bag", "id", "profile", "sequence"}, default="bag"
        ``"bag"`` (FISM / SVD++ style implicit feedback): the mean-pooled embedding of up to
        ``history_bag_size`` of the user's other positive training items (the most recent ones
        when X has ``time_col``), plus user features, no id. A training row's bag leaves out the
        row's own item (``HistoryBuilder(leave_one_out=True)``); early stopping builds the bags
        from the rows it trains on only; the fitted model serves each user with their positives
        and a user unseen in fit with an empty bag (features only). ``"id"``: user-id embedding
        plus user features. ``"profile"``: the mean of the numeric content features
        of the user's positive training items (leave-one-out for training rows), plus user
        features, no id. ``"sequence"``: self-attention over the user's
        earlier positive items (strictly before each row's time, so no label leaks), plus user
        features, no id. All but ``"id"`` serve users unseen in fit without an embedding they
        never trained. On MovieLens-100K ``"bag"`` beats ``"id"`` by about 0.009 Recall@10 and
        is ahead of or level with a tuned ALS on every split (benchmarks/RESULTS.md section 4).
    item_id_embedding : bool, default=True
        False makes the item tower content-only, so new items are served from their features.
    history_bag_size : int, default=300
        Most items in a user's bag (``user_representation="bag"``; unused otherwise). It bounds
        the work per row, not the memory: histories are stored once per interaction.
    rating_transform : None, "center" or callable, default=None
        Turns ``y`` (a rating or relevance per row) into sample weights: None uses ``y`` as is,
        ``"center"`` uses ``y - 2`` (a 1-5 rating becomes -1..3, so low ratings are negatives). Rows whose weight is <= 0 become explicit
        negatives (label 0, weight ``|w|``) with ``loss="bce"`` and are dropped for the other
        losses.
    loss : {"softmax", "infonce", "bpr", "bce"}, default="softmax"
        ``"softmax"``: in-batch sampled softmax with logQ correction and masking of accidental
        hits. ``"infonce"``, ``"bpr"``, ``"bce"``: each positive against
        its own negatives.
    negative_sampler : str or NegativeSampler, default="in_batch"
        Where negatives come from (see :mod:`skdssm.sampling`): a sampler object such as
        ``PopularitySampler(alpha=0.75, n_negatives=4)``, whose parameters grid-search as
        ``negative_sampler__alpha``, or the name of one with its defaults (``"in_batch"``,
        ``"uniform"``, ``"popularity"``, ``"log_uniform"``, ``"mixed"``). ``"in_batch"`` and
        ``"mixed"`` use the other positives of the batch; the others draw ``n_negatives`` items
        per positive (4 by default: four negatives per positive). Every sampler leaves out the user's
        known positives unless built with ``exclude_known_positives=False``. The batch loader
        draws the negatives; the fitted copy is ``sampler_`` (seeded by ``random_state`` when
        its own ``random_state`` is None).
    logq_correction : bool, default=True
        Subtract the log sampling probability of each candidate from its logit (``"softmax"``).
    symmetric : bool, default=True
        ``loss="softmax"`` only (ignored by the others): add the item-to-user direction of the
        in-batch softmax, in which each batch item must pick its own user out of the batch's
        users (logQ-corrected by user frequency, with the same masking), as in CLIP's
        symmetric contrastive loss. The two directions are summed. On MovieLens-100K it adds
        about 0.008 Recall@10, on every seed tried (benchmarks/RESULTS.md).
    eval_k : int, default=10
        k of the validation Recall@k that drives early stopping (``valid_recall_at_{k}``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (default 0.05) of the positives of each user with >= 5
        of them, rank the whole catalogue for those users after every epoch (excluding their
        training positives) and stop when Recall@``eval_k`` has not improved for
        ``n_iter_no_change`` epochs (default 10: full-ranking recall is noisy from epoch to
        epoch and can stall for several epochs before it climbs again), restoring the best
        weights; with ``refit=True``, then retrain on every row for the chosen number of epochs.
        Off by default, like scikit-learn's ``MLPClassifier``: on MovieLens-100K the default
        model's test recall levels off within the default budget and does not over-fit, while
        the held-out rows cost it about 0.006 Recall@10 and the noisy validation recall often
        stops it early (benchmarks/RESULTS.md sections 4 and 7). Turn it on, or lower
        ``max_epochs``, for data on which ``max_epochs`` over-fits.

    Attributes
    ----------
    net_, history_, best_epoch_, validation_history_, user_ids_, item_ids_, item_embeddings_,
    seen_items_, feature_encoder_, index_, n_features_in_, feature_names_in_
        As in :class:`DSSMRecommender`.
    sampler_ : NegativeSampler
        The fitted copy of ``negative_sampler``.
    histories_ : object
        Every user's positive items (and their times), oldest first, in CSR layout
        (``histories_.indptr``, ``histories_.items`` as positions in ``item_ids_``,
        ``histories_.times``): one entry per positive interaction, whatever
        ``history_bag_size``. The batch loader and serving gather bags, sequences and profiles
        from it.
    profiles_ : object
        With ``user_representation="profile"``: the users' sums of the item content features
        over their histories (``profile_item_features_``, one row per item).

    Notes
    -----
    The tower and training defaults differ from :class:`DSSMRecommender`'s: ReLU
    ``hidden_dims=(256, 256, 128)``, ``dropout=0.4`` after each activation, ``temperature=0.1``,
    ``lr=3e-3``, ``optimizer="adamw"`` with ``weight_decay=0.01``. They were chosen on
    MovieLens-100K (benchmarks/RESULTS.md): heavy dropout and a higher temperature than the usual
    0.05 give the best Recall@10. ``max_epochs=25`` (it was 50) reaches the same Recall@10 there
    with the rebuilt data path and training step 5.6 times faster; shorter budgets, cosine schedules,
    larger learning rates and smaller towers were measured and lose 0.005 to 0.04
    (benchmarks/RESULTS.md section 7).

    Examples
    --------
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm import TwoTowerRetriever
    >>> data = make_interactions(n_users=60, n_items=40, random_state=0)
    >>> positives = data.frame[data.frame["label"] == 1].drop(columns=["label", "rating"])
    >>> model = TwoTowerRetriever(hidden_dims=(32, 16), max_epochs=2, random_state=0)
    >>> model.fit(positives).predict_topk([1, 2], k=5).shape
    (2, 5)
    """

    _parameter_constraints: dict = {
        **TwoTowerBase._parameter_constraints,
        "time_col": [str, Integral, None],
        "user_representation": [StrOptions({"bag", "id", "profile", "sequence"})],
        "item_id_embedding": ["boolean"],
        "history_bag_size": [Interval(Integral, 1, None, closed="left")],
        "rating_transform": [StrOptions({"center"}), callable, None],
        "loss": [StrOptions({"softmax", "infonce", "bpr", "bce"})],
        "negative_sampler": [StrOptions(set(SAMPLERS)), NegativeSampler],
        "logq_correction": ["boolean"],
        "symmetric": ["boolean"],
        "eval_k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, user_col="user_id", item_col="item_id", user_features="auto",
                 item_features="auto", sequence_features=None, time_col="timestamp",
                 user_representation="bag", item_id_embedding=True, history_bag_size=300,
                 rating_transform=None,
                 embedding_dim=32, hidden_dims=(256, 256, 128), item_hidden_dims=None,
                 activation="relu", batch_norm=False, dropout=0.4, dropout_position="after",
                 init="default", activate_output=False, normalize=True, temperature=0.1,
                 ensemble_size=1, n_heads=2, n_attention_layers=1, max_sequence_length=50,
                 loss="softmax", negative_sampler="in_batch", logq_correction=True, symmetric=True,
                 eval_k=10,
                 max_epochs=25, batch_size=512, lr=3e-3, optimizer="adamw", weight_decay=0.01,
                 early_stopping=False, validation_fraction=0.05, n_iter_no_change=10,
                 refit=False, lr_schedule=None, callbacks=None, id_dropout=0.0,
                 mixed_precision=None, gradient_checkpointing=False, distributed=False, verbose=0,
                 device="cpu", index="auto", random_state=None):
        self._store_params(locals())

    # ------------------------------------------------------------ targets
    def _row_weights(self, X: pd.DataFrame, y, sample_weight) -> np.ndarray | None:
        """Signed weight per row from y / rating_transform / sample_weight (None: all ones)."""
        weights = None
        if y is not None:
            y = np.asarray(y, dtype=np.float64)
            if y.ndim != 1 or len(y) != len(X):
                raise ValueError(f"y must be 1-D with one value per row of X; got shape {y.shape} "
                                 f"for {len(X)} rows.")
            if not np.isfinite(y).all():
                raise ValueError("y contains missing or infinite values; every row of X needs a "
                                 "finite rating.")
            if self.rating_transform == "center":
                weights = y - 2.0
            elif callable(self.rating_transform):
                weights = np.asarray(self.rating_transform(y), dtype=np.float64)
            else:
                weights = y
        elif self.rating_transform is not None:
            raise ValueError("rating_transform needs y (a rating per row); got y=None.")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            weights = sample_weight if weights is None else weights * sample_weight
        return weights

    # ---------------------------------------------------------- histories
    def _features_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """X without the time column (it orders histories but is never a feature)."""
        if self.time_col is not None and self.time_col in X.columns:
            return X.drop(columns=self.time_col)
        return X

    def _times(self, X: pd.DataFrame, what: str = "X") -> np.ndarray | None:
        """Event times of X's rows, or None when X has no time column (histories then keep
        the order of the rows)."""
        if self.time_col is None or self.time_col not in X.columns:
            if self.user_representation == "sequence":
                check_columns(X, [self.time_col],
                              what=f"{what} (user_representation='sequence' needs it)")
            return None
        return _time_values(X[self.time_col], self.time_col)

    def _find_profile_columns(self, X: pd.DataFrame) -> list:
        probe = FeatureEncoder(self.user_col, self.item_col, self.user_features,
                               self.item_features, self.sequence_features,
                               self.max_sequence_length).fit(X)
        columns = [f.columns[0] for f in probe.side_features("item") if f.kind == "dense"]
        if not columns:
            raise ValueError(
                "user_representation='profile' averages the numeric (float) item features of each "
                "user's positive items, but X has no float item feature column. Add content "
                "features (e.g. scaled geo columns) or use user_representation='id'."
            )
        return columns

    def _user_inputs(self, histories: UserHistories, profiles: UserProfiles | None = None, *,
                     training: bool = False) -> UserInputs | None:
        """The batch transform that gathers the users' generated inputs from ``histories``
        (``profiles``: their profile sums; by default computed from ``histories``). Training
        batches on the CPU also carry the bags' transposed pooling matrix, for the backward pass
        (on CUDA, ``embedding_bag``'s own backward is kept)."""
        if self.user_representation == "id":
            return None
        if self.user_representation == "profile" and profiles is None:
            profiles = UserProfiles.of(histories, self.profiles_)
        bag_codes = (len(self.item_ids_) + N_RESERVED if training and self.user_representation
                     == "bag" and torch.device(self._device()).type == "cpu" else None)
        return UserInputs(self.user_representation, histories, bag_size=self.history_bag_size,
                          sequence_length=self.max_sequence_length, profiles=profiles,
                          bag_codes=bag_codes)

    def _module_params(self) -> dict:
        params = super()._module_params()
        schema = params["user_schema"]
        n_codes = len(self.item_ids_) + N_RESERVED
        if self.user_representation == "bag":
            schema.multi[HISTORY_BAG] = n_codes
        elif self.user_representation == "sequence":
            schema.sequence[HISTORY] = (n_codes, self.max_sequence_length)
        elif self.user_representation == "profile":
            schema.n_profile = len(self._profile_columns)
        return params

    def _make_sampler(self, seed: int) -> NegativeSampler:
        if isinstance(self.negative_sampler, str):
            return make_sampler(self.negative_sampler, random_state=seed)
        sampler = clone(self.negative_sampler)
        if sampler.get_params().get("random_state", 0) is None:
            sampler.set_params(random_state=seed)
        return sampler

    def _query_histories(self, users, positions: np.ndarray, history) -> tuple:
        """Histories of the query rows (the stored ones, or those ``history`` gives) and the
        users x items matrix of the ``history`` items (None without one)."""
        if history is None:
            return self.histories_.take(positions), None
        if self.user_representation == "id":
            raise ValueError("history= describes users by their items, but "
                             "user_representation='id' embeds user ids; fit with 'bag', "
                             "'sequence' or 'profile' to serve users from their history.")
        history = check_dataframe(history, what="history")
        check_columns(history, [self.user_col, self.item_col], what="history")
        times = None
        if self.histories_.times is not None:
            if self.time_col not in history.columns:
                raise ValueError(
                    f"Column {self.time_col!r} is missing from history; the model orders "
                    f"histories by time, so pass each event's time. history has columns "
                    f"{list(history.columns)}.")
            times = self._times(history)
        ids = users[self.user_col] if isinstance(users, pd.DataFrame) else pd.Series(
            np.asarray(users, dtype=object))
        query_codes, query_users = pd.factorize(ids.to_numpy(dtype=object))
        rows = pd.Index(query_users).get_indexer(pd.Index(history[self.user_col].to_numpy(dtype=object)))
        items = pd.Index(self.item_ids_).get_indexer(pd.Index(history[self.item_col].to_numpy(dtype=object)))
        unknown = (rows >= 0) & (items < 0)
        if unknown.any():
            first = history[self.item_col].to_numpy()[unknown][:1].tolist()[0]
            warnings.warn(f"{int(unknown.sum())} history row(s) name items unknown to the model "
                          f"(first: {first!r}); they are ignored.", UserWarning, stacklevel=5)
        keep = (rows >= 0) & (items >= 0)
        given = UserHistories.from_events(rows[keep], items[keep], len(query_users),
                                          None if times is None else times[keep])
        # A query user named in history (even by unknown items only) is described by it alone.
        replaced = np.isin(query_codes, rows)
        supplied = given.take(np.where(replaced, query_codes, -1))
        merged = UserHistories.stack(self.histories_.take(np.where(replaced, -1, positions)),
                                     supplied)
        return merged, supplied.matrix(len(self.item_ids_)).astype(bool)

    def _user_queries(self, users, history=None):
        inputs, positions = self._inputs_for("user", users)
        if self.user_representation == "id":
            if history is not None:
                self._query_histories(users, positions, history)
            return inputs, positions, None, None
        histories, extra_seen = self._query_histories(users, positions, history)
        inputs[USER_POSITION] = np.arange(len(positions))
        return inputs, positions, self._user_inputs(histories), extra_seen

    def _generated_input_specs(self, side: str) -> list:
        """How a service builds the user inputs of ``user_representation`` (vocabularies.json)."""
        if side != "user" or self.user_representation == "id":
            return []
        items = {"vocabulary_of": f"item:{self.item_col}", "dtype": "int64"}
        if self.user_representation == "bag":
            return [{"name": f"user:{HISTORY_BAG}", "kind": "history_bag", **items,
                     "shape": ["n_codes"], "max_items": int(self.history_bag_size),
                     "description": "codes of each user's most recent max_items positive items "
                                    "(all when fewer), rows one after the other"},
                    {"name": f"user:{HISTORY_BAG}{OFFSETS}", "kind": "offsets",
                     "of": f"user:{HISTORY_BAG}", "dtype": "int64", "shape": ["batch"],
                     "description": "start of each row's codes in user:history_bag (an empty "
                                    "bag starts where the next row starts)"}]
        if self.user_representation == "sequence":
            return [{"name": f"user:{HISTORY}", "kind": "history_sequence", **items,
                     "shape": ["batch", int(self.max_sequence_length)],
                     "alignment": "right (most recent last)",
                     "description": "codes of each user's most recent positive items, oldest "
                                    "first, padded with 0 on the left"}]
        return [{"name": f"user:{PROFILE}", "kind": "profile", "dtype": "float32",
                 "columns": [str(c) for c in self._profile_columns],
                 "shape": ["batch", len(self._profile_columns)],
                 "global_mean": self.profiles_.global_profile.tolist(),
                 "description": "mean of these item columns over the user's positive items; "
                                "global_mean for a user without any"}]

    def _validation_scorer(self, arrays, train_histories, train_rows, valid_rows, positive):
        """Recall@eval_k of the held-out positives, ranking the catalogue minus training items."""
        user_pos, item_pos = arrays[USER_POSITION], arrays[ITEM_POSITION]
        held_out = valid_rows[positive[valid_rows]]
        users = np.unique(user_pos[held_out])
        n_items = len(self.item_ids_)
        relevant = sp.csr_matrix(
            (np.ones(len(held_out)), (np.searchsorted(users, user_pos[held_out]), item_pos[held_out])),
            shape=(len(users), n_items))
        seen = sp.csr_matrix(
            (np.ones(len(train_rows)), (user_pos[train_rows], item_pos[train_rows])),
            shape=(len(self.user_ids_), n_items))[users]
        user_inputs = {key: value[users] for key, value in self.user_inputs_.items()}
        user_inputs[USER_POSITION] = users
        return HeldOutRecall(user_inputs, self.item_inputs_, relevant, seen,
                             min(self.eval_k, n_items), self._device(),
                             self._user_inputs(train_histories, getattr(self, "profiles_", None)))

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y=None, sample_weight=None, *, user_frame=None,
            item_frame=None) -> TwoTowerRetriever:
        """Learn both towers from positive interactions.

        Parameters
        ----------
        X : DataFrame of shape (n_interactions, n_columns), or scipy.sparse matrix
            One row per interaction: ``user_col``, ``item_col``, feature columns and (for
            ``user_representation="sequence"``) ``time_col``. Or a sparse users x items matrix
            as implicit and LightFM take: each stored entry is an interaction whose user id is
            its row position and item id its column position, and whose value is its ``y``
            (turned into a weight by ``rating_transform``; entries are read in (row, column)
            order, duplicates summed). ``predict_topk`` and the other verbs then take row
            positions, and return column positions. Rows and columns without any entry are
            not in ``user_ids_`` / ``item_ids_`` (serve such a user as unseen, add such items
            with :meth:`index_items`).
        y : array-like of shape (n_interactions,), default=None
            Optional rating / relevance per row, turned into weights by ``rating_transform``.
            None with a sparse X (its values are the ratings).
        sample_weight : array-like of shape (n_interactions,), default=None
            Multiplies the weights. None with a sparse X.
        user_frame, item_frame : DataFrame, default=None
            Only with a sparse X: feature columns of the users (row i describes row i of X)
            and of the items (row j describes column j). They join each interaction as if X
            were a frame, so ``user_features`` / ``item_features`` name their columns.

        Returns
        -------
        self

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> from skdssm import TwoTowerRetriever
        >>> R = sp.random(30, 20, density=0.3, format="csr", random_state=0)
        >>> model = TwoTowerRetriever(hidden_dims=(16,), max_epochs=1, random_state=0).fit(R)
        >>> model.predict_topk([0, 1], k=3).shape
        (2, 3)
        """
        if sp.issparse(X):
            X, y = interactions_from_sparse(X, self.user_col, self.item_col, user_frame,
                                            item_frame, y=y, sample_weight=sample_weight)
        else:
            check_side_frames(user_frame, item_frame)
        X = self._start_fit(X)
        check_columns(X, [self.user_col, self.item_col])
        self._record_input(X)
        weights = self._row_weights(X, y, sample_weight)
        all_rows = X
        if weights is not None and self.loss != "bce":
            X, weights = X[weights > 0], weights[weights > 0]
        positive = np.ones(len(X), dtype=bool) if weights is None else weights > 0
        if not positive.any():
            raise ValueError("X has no positive interaction (every weight is <= 0).")
        times = self._times(X)
        features = self._features_frame(X)
        seed = self._seed()

        user_codes = pd.factorize(X[self.user_col])[0]
        train_rows, valid_rows = (
            user_holdout_rows(user_codes, self.validation_fraction, check_generator(seed))
            if self.early_stopping else (np.arange(len(X)), np.zeros(0, int)))
        fit_rows = positive.copy()
        fit_rows[valid_rows] = False

        self._profile_columns = (self._find_profile_columns(features)
                                 if self.user_representation == "profile" else [])
        arrays = self._fit_encoder(features, embed_user_id=self.user_representation == "id",
                                   embed_item_id=self.item_id_embedding)
        # Rows dropped as negatives (listwise losses) still count as seen at serving time.
        self._fit_catalogue(features, seen_rows=self._features_frame(all_rows))
        user_pos = arrays[f"user:{self.user_col}"] - N_RESERVED
        item_pos = arrays[f"item:{self.item_col}"] - N_RESERVED
        arrays[USER_POSITION], arrays[ITEM_POSITION] = user_pos, item_pos
        n_users, n_items = len(self.user_ids_), len(self.item_ids_)

        def histories_of(rows):
            return UserHistories.from_events(user_pos[rows], item_pos[rows], n_users,
                                             None if times is None else times[rows])

        if self.user_representation == "profile":
            vocabulary = self.feature_encoder_.feature(self.item_col).vocabulary
            self.profile_item_features_ = self._last_rows(features, self.item_col, vocabulary)[
                self._profile_columns].to_numpy(dtype=np.float64)
            arrays[LEAVE_ONE_OUT] = fit_rows
        self.histories_ = train_histories = histories_of(fit_rows)
        if self.user_representation == "profile":
            self.profiles_ = UserProfiles(train_histories, self.profile_item_features_)
        if self.user_representation == "sequence":
            arrays[HISTORY_END] = train_histories.ends_before(user_pos, times)

        label = positive.astype(np.float32)
        if weights is not None:
            arrays[SAMPLE_WEIGHT] = np.abs(weights).astype(np.float32)
        self.sampler_ = self._make_sampler(seed).fit(
            user_pos[fit_rows], item_pos[fit_rows], n_items=n_items, n_users=n_users)
        if self.distributed:
            # Same frequency tables on every rank, but each rank draws its own negatives.
            self.sampler_.generator_ = check_generator(rank_seed(seed))
        transform = Compose([self._user_inputs(train_histories, getattr(self, "profiles_", None),
                                               training=True),
                             DrawCandidates(
            self.sampler_, self.item_inputs_, shared_columns=self.loss == "softmax",
            log_q=self.logq_correction, user_log_q=self.loss == "softmax" and self.symmetric
            and self.logq_correction)])

        callbacks = []
        if self.early_stopping:
            callbacks = [(f"valid_recall_at_{self.eval_k}", FullRankingRecall(
                self._validation_scorer(arrays, train_histories, train_rows, valid_rows, positive),
                f"valid_recall_at_{self.eval_k}"))]
        net = self._make_net(
            RetrievalCriterion, self._callbacks(f"valid_recall_at_{self.eval_k}", False, callbacks),
            seed, FixedSplit(train_rows, valid_rows), transform=transform)
        net.set_params(criterion__loss=self.loss, criterion__symmetric=self.symmetric,
                       criterion__in_batch=self.sampler_.uses_batch_negatives)
        self._train(net, arrays, label, seed)
        if self._refits():
            return self._refit_on_all_rows(all_rows, y, sample_weight)
        if self.early_stopping:
            # Serve with everything known: histories of every positive row.
            self.histories_ = histories_of(positive)
            if self.user_representation == "profile":
                self.profiles_ = UserProfiles(self.histories_, self.profile_item_features_)
        self._fit_item_embeddings()
        self._fit_index()
        return self

    def score(self, X: pd.DataFrame, y=None, sample_weight=None) -> float:
        """Recall@10 of the interactions in X: the default score of model selection.

        X holds held-out interactions (e.g. the test fold of
        :class:`~skdssm.model_selection.UserHoldoutSplit`). Each of their users gets the top 10
        of the whole catalogue with ``exclude_seen=True`` (the items they interacted with in fit
        are left out, the held-out ones are not), and the score is the mean over those users of
        hits / min(10, their number of rows in X): exactly
        ``make_topk_scorer("recall", k=10)(model, X)``. So
        ``cross_val_score(TwoTowerRetriever(), X, cv=UserHoldoutSplit())`` needs no ``scoring=``;
        for another metric or k pass ``scoring=make_topk_scorer(...)``.

        Parameters
        ----------
        X : DataFrame
            Interactions with ``user_col`` and ``item_col``.
        y : array-like of shape (n_interactions,), default=None
            Ratings, as in :meth:`fit`: only rows whose weight (``y`` through
            ``rating_transform``, times ``sample_weight``) is positive count as relevant, the
            rows fit would train on as positives. None: every row is relevant.
        sample_weight : array-like of shape (n_interactions,), default=None
            As in :meth:`fit`; it selects the relevant rows and does not otherwise weigh them.

        Returns
        -------
        float
            Recall@10, in [0, 1]; greater is better.

        Examples
        --------
        >>> from sklearn.model_selection import cross_val_score
        >>> from skdssm import TwoTowerRetriever
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm.model_selection import UserHoldoutSplit
        >>> data = make_interactions(n_users=60, n_items=40, random_state=0)
        >>> positives = data.frame[data.frame["label"] == 1][["user_id", "item_id"]]
        >>> model = TwoTowerRetriever(hidden_dims=(16,), max_epochs=2, random_state=0)
        >>> scores = cross_val_score(model, positives, cv=UserHoldoutSplit(random_state=0))
        >>> bool(0 <= scores[0] <= 1)
        True
        """
        check_is_fitted(self)
        X = self._check_X(X)
        if y is not None or sample_weight is not None:
            weights = self._row_weights(X, y, sample_weight)
            X = X[weights > 0]
        return make_topk_scorer("recall", k=10, user_col=self.user_col,
                                item_col=self.item_col)(self, X)
