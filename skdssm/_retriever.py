"""TwoTowerRetriever: implicit-feedback retrieval with sampled negatives (designs 3, 4 and 5)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight
from skorch.callbacks import Callback
from torch import nn

from ._base import TwoTowerBase, embed, exact_topk
from ._features import N_RESERVED, FeatureEncoder
from ._skorch import SAMPLE_WEIGHT, FixedSplit
from ._utils import check_columns, check_dataframe, check_generator
from .losses import (
    binary_cross_entropy,
    bpr_loss,
    infonce_loss,
    logq_correction,
    mask_logits,
    remove_accidental_hits,
    sampled_softmax_loss,
    split_logits,
)
from .metrics import recall_at_k
from .model_selection import user_holdout_rows
from .preprocessing import HistoryBuilder, UserProfileEncoder
from .sampling import SAMPLERS, make_sampler

HISTORY = "history"
BAG = "history_bag"
PROFILE_PREFIX = "profile_"


def _string_named(X: pd.DataFrame, refs=()) -> tuple[pd.DataFrame, list]:
    """X with string column names, and ``refs`` (column names) as they read in it.

    The history / profile builders are sklearn transformers, which reject frames whose column
    names mix ints and strings and treat int-only names as positions; the estimator accepts
    any hashable names, so it hands them string-named views (X itself when already so).
    """
    if all(isinstance(c, str) for c in X.columns):
        return X, list(refs)
    return X.set_axis(X.columns.map(str), axis=1), [None if r is None else str(r) for r in refs]


def _with_generated(X: pd.DataFrame, view: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """X plus the columns a builder added to its string-named ``view`` of X."""
    if view is X:
        return out
    new = out.columns.difference(view.columns, sort=False)
    return pd.concat([X, out[new]], axis=1)


class RetrievalLoss(nn.Module):
    """Criterion of :class:`TwoTowerRetriever`: scores each positive against negatives.

    Negatives are the other positives of the batch (samplers ``"in_batch"`` and ``"mixed"``)
    and/or items drawn by the sampler, embedded by the item tower from the catalogue's inputs.

    - ``"softmax"``: every candidate column (batch items, then the draws of every row pooled
      as shared extra columns) competes with the row's positive; logits are corrected by the log
      of each candidate's sampling probability (logQ), accidental hits (the row's own item in
      another column) and the user's other known positives are masked. With ``symmetric=True``
      the item-to-user direction is added: each batch item must also pick its own user out of
      the batch's users (logQ-corrected by user frequency; the same user in another column and
      users who know the item as a positive are masked), as in CLIP's symmetric loss.
    - ``"infonce"``, ``"bpr"``, ``"bce"``: each positive against its own negatives (its draws,
      and/or the other batch items); ``"bce"`` also takes explicit negatives (rows labelled 0).
    """

    def __init__(self, loss="softmax", sampler=None, catalogue=None, logq_correction=True,
                 user_key="user:user_id", item_key="item:item_id", symmetric=False):
        super().__init__()
        self.loss = loss
        self.sampler = sampler
        self.catalogue = catalogue
        self.logq_correction = logq_correction
        self.user_key = user_key
        self.item_key = item_key
        self.symmetric = symmetric
        self._log_q = {}

    def _embed_candidates(self, module, positions: np.ndarray) -> torch.Tensor:
        device = next(module.parameters()).device
        flat = torch.as_tensor(positions.reshape(-1))
        inputs = {key: value[flat].to(device) for key, value in self.catalogue.items()}
        return module.item_tower(inputs).view(*positions.shape, -1)

    def _cached_log_q(self, key, compute, device) -> torch.Tensor:
        """``compute()`` (a log q array) as a float tensor, cached under ``key``.

        Items or users absent from the training rows (e.g. only in the validation rows) have
        log q = -inf; they get the rarest training entry's value so validation losses stay
        finite.
        """
        if key not in self._log_q:
            log_q = compute()
            finite = np.isfinite(log_q)
            log_q = np.where(finite, log_q, log_q[finite].min())
            self._log_q[key] = torch.as_tensor(log_q, dtype=torch.float32, device=device)
        return self._log_q[key]

    def forward(self, y_pred, y_true, X, module) -> torch.Tensor:
        _, user, item = y_pred
        weight = X.get(SAMPLE_WEIGHT)
        items = X[self.item_key] - N_RESERVED
        users = X[self.user_key] - N_RESERVED
        users_np = users.cpu().numpy()
        items_np = items.cpu().numpy()
        draws = self.sampler.sample(users_np, items_np)
        drawn = self._embed_candidates(module, draws) if draws.size else None
        if self.loss == "softmax":
            member_loss = self._softmax(users, items, users_np, draws, weight)
        else:
            member_loss = self._pairwise(items, users_np, items_np, y_true, weight)
        # Ensemble members (module.ensemble_size > 1) each learn from their own loss.
        drawn_members = module.members(drawn) if drawn is not None else [None] * module.ensemble_size
        losses = [member_loss(module, *embeddings) for embeddings in
                  zip(module.members(user), module.members(item), drawn_members)]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _known_mask(self, users_np, candidate_items_np, device):
        if not self.sampler.exclude_known_positives:
            return None
        return torch.as_tensor(self.sampler.known_positive_mask(users_np, candidate_items_np),
                               device=device)

    def _softmax(self, users, items, users_np, draws, weight):
        """The sampled softmax of one ensemble member, as a function ``loss(module, user, item,
        drawn)`` of its embeddings; what depends only on ids (logQ, masks) is computed once."""
        device = items.device
        columns = torch.arange(len(items), device=device)
        candidate_items = items
        if draws.size:
            candidate_items = torch.cat([items, torch.as_tensor(draws.reshape(-1), device=device)])
        log_q = user_log_q = None
        if self.logq_correction:
            n_batch, n_sampled = len(items), draws.size
            log_q = self._cached_log_q((n_batch, n_sampled),
                                       lambda: self.sampler.mixture_log_q(n_batch, n_sampled),
                                       device)[candidate_items]
            if self.symmetric:
                user_log_q = self._cached_log_q("users", lambda: self.sampler.batch_user_log_q_,
                                                device)[users]
        known = self._known_mask(users_np, candidate_items.cpu().numpy(), device)

        def loss(module, user, item, drawn):
            candidates = item if drawn is None else torch.cat([item, drawn.flatten(0, -2)])
            logits = module.score_matrix(user, candidates)
            if log_q is not None:
                logits = logq_correction(logits, log_q)
            logits = remove_accidental_hits(logits, items, candidate_items, columns)
            if known is not None:
                logits = mask_logits(logits, known, columns)
            total = sampled_softmax_loss(logits, columns, weight)
            if self.symmetric:
                total = total + self._item_to_user(module, user, item, users, user_log_q, known,
                                                   weight)
            return total

        return loss

    def _item_to_user(self, module, user, item, users, user_log_q, known, weight):
        """Each batch item against the batch's users: the second half of the symmetric softmax.

        ``user_log_q`` is the log frequency of each batch user (None without logQ correction);
        ``known`` is the (users, candidates) known-positive mask of the user-to-item half (or
        None), whose first B columns are the batch items.
        """
        columns = torch.arange(len(users), device=item.device)
        logits = module.score_matrix(item, user)  # rows: batch items, columns: batch users
        if user_log_q is not None:
            logits = logq_correction(logits, user_log_q)
        logits = remove_accidental_hits(logits, users, users, columns)
        if known is not None:
            logits = mask_logits(logits, known[:, : len(users)].T, columns)
        return sampled_softmax_loss(logits, columns, weight)

    def _pairwise(self, items, users_np, items_np, y_true, weight):
        """The ``"infonce"`` / ``"bpr"`` / ``"bce"`` loss of one ensemble member, as a function
        ``loss(module, user, item, drawn)`` of its embeddings; the masks are computed once."""
        batch_mask = None
        if self.sampler.uses_batch_negatives:
            columns = torch.arange(len(items), device=items.device)
            batch_mask = items[:, None] == items[None, :]
            known = self._known_mask(users_np, items_np, items.device)
            if known is not None:
                batch_mask = batch_mask | known

        def loss(module, user, item, drawn):
            negatives, masks = [], []
            if batch_mask is not None:
                positive, in_batch, in_batch_mask = split_logits(
                    module.score_matrix(user, item), columns, batch_mask)
                negatives.append(in_batch)
                masks.append(in_batch_mask)
            else:
                positive = module.score(user, item)
            if drawn is not None:
                scores = module.score_matrix(user, drawn)
                negatives.append(scores)
                masks.append(torch.zeros_like(scores, dtype=torch.bool))
            negatives, negative_mask = torch.cat(negatives, dim=1), torch.cat(masks, dim=1)
            if self.loss == "infonce":
                return infonce_loss(positive, negatives, negative_mask, weight)
            if self.loss == "bpr":
                return bpr_loss(positive, negatives, negative_mask, weight)
            # bce: own pairs with their labels (explicit negatives are 0), plus the sampled
            # negatives of the positive rows.
            is_positive = (y_true > 0.5)[:, None]
            negative_weight = (~negative_mask & is_positive).to(positive.dtype).reshape(-1)
            own_weight = weight if weight is not None else torch.ones_like(positive)
            return binary_cross_entropy(
                torch.cat([positive, negatives.reshape(-1)]),
                torch.cat([y_true.to(positive.dtype), torch.zeros_like(negative_weight)]),
                torch.cat([own_weight.to(positive.dtype), negative_weight]),
            )

        return loss


class HeldOutRecall:
    """``module -> Recall@k`` of held-out positives, ranking the whole catalogue minus each
    user's training positives.

    A class rather than a closure: the fitted net keeps its callbacks, so the estimator must
    stay picklable.
    """

    def __init__(self, user_inputs: dict, item_inputs: dict, relevant: sp.csr_matrix,
                 seen: sp.csr_matrix, k: int, device):
        self.user_inputs = user_inputs
        self.item_inputs = item_inputs
        self.relevant = relevant
        self.seen = seen
        self.k = k
        self.device = device

    def __call__(self, module) -> float:
        items = embed(module.item_tower, self.item_inputs, self.device)
        queries = embed(module.user_tower, self.user_inputs, self.device)
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
        score = float(self.evaluate(net.module_))
        net.history.record(self.name, score)
        net.history.record(self.name + "_best", score > self.best_)
        self.best_ = max(self.best_, score)


class TwoTowerRetriever(TwoTowerBase):
    """Two-tower retrieval model trained on positive interactions only, with sampled negatives.

    X holds one row per positive interaction (user id, item id, feature columns, optionally a
    timestamp); the model learns to rank each user's items above the rest of the catalogue and is
    judged by full-ranking Recall/NDCG@k. Towers, feature handling and training machinery are those
    of :class:`DSSMRecommender` (see its parameters); the parameters below are specific.

    Parameters
    ----------
    user_col, item_col, user_features, item_features, sequence_features
        As in :class:`DSSMRecommender`.
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
        plus user features. ``"profile"`` (design 4): the mean of the numeric content features
        of the user's positive training items (leave-one-out for training rows), plus user
        features, no id. ``"sequence"`` (designs 1 and 5): self-attention over the user's
        earlier positive items (strictly before each row's time, so no label leaks), plus user
        features, no id. All but ``"id"`` serve users unseen in fit without an embedding they
        never trained. On MovieLens-100K ``"bag"`` beats ``"id"`` by about 0.009 Recall@10 and
        is ahead of or level with a tuned ALS on every split (benchmarks/RESULTS.md section 4).
    item_id_embedding : bool, default=True
        False makes the item tower content-only, so new items are served from their features.
    history_bag_size : int, default=300
        Most items in a user's bag (``user_representation="bag"``; unused otherwise).
    rating_transform : None, "center" or callable, default=None
        Turns ``y`` (a rating or relevance per row) into sample weights: None uses ``y`` as is,
        ``"center"`` uses ``y - 2`` (design 4). Rows whose weight is <= 0 become explicit
        negatives (label 0, weight ``|w|``) with ``loss="bce"`` and are dropped for the other
        losses.
    loss : {"softmax", "infonce", "bpr", "bce"}, default="softmax"
        ``"softmax"``: in-batch sampled softmax with logQ correction and masking of accidental
        hits. ``"infonce"`` (design 5), ``"bpr"``, ``"bce"`` (design 4): each positive against
        its own negatives.
    negative_sampler : {"in_batch", "uniform", "popularity", "log_uniform", "mixed"}, default="in_batch"
        Where negatives come from (see :mod:`skdssm.sampling`). ``"in_batch"`` and ``"mixed"`` use
        the other positives of the batch; the others draw ``n_negatives`` items per positive.
    n_negatives : int, default=4
        Draws per positive (1:4 as in design 5); unused by ``"in_batch"``.
    popularity_alpha : float, default=0.75
        Exponent of the ``"popularity"`` sampler (count ** alpha).
    exclude_known_positives : bool, default=True
        Never use a user's own training positives as their negatives.
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
    embedding_dim, hidden_dims, item_hidden_dims, activation, batch_norm, dropout,
    dropout_position, init, activate_output, normalize, temperature, ensemble_size, n_heads,
    n_attention_layers, max_sequence_length, max_epochs, batch_size, lr, optimizer,
    weight_decay, refit, lr_schedule, callbacks, id_dropout, mixed_precision,
    gradient_checkpointing, verbose, device, index, index_params, random_state
        As in :class:`DSSMRecommender`, with retrieval defaults: ReLU ``hidden_dims=(256, 256,
        128)``, ``dropout=0.4`` after each activation, ``temperature=0.1``, ``lr=3e-3``,
        ``optimizer="adamw"`` with ``weight_decay=0.01`` (design 5), ``max_epochs=50``. They were
        chosen on MovieLens-100K (benchmarks/RESULTS.md): heavy dropout and a higher temperature
        than the usual 0.05 give the best Recall@10.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (default 0.05) of the positives of each user with >= 5
        of them, rank the whole catalogue for those users after every epoch (excluding their
        training positives) and stop when Recall@``eval_k`` has not improved for
        ``n_iter_no_change`` epochs (default 10: full-ranking recall is noisy from epoch to
        epoch and can stall for several epochs before it climbs again), restoring the best
        weights; with ``refit=True``, then retrain on every row for the chosen number of epochs.
        Off by default, like scikit-learn's ``MLPClassifier``: on MovieLens-100K the default
        model's test recall climbs until about epoch 30 and then stays level to epoch 60 (it
        does not over-fit), while the held-out rows cost it about 0.006 Recall@10 and the noisy
        validation recall often stops it before the plateau (benchmarks/RESULTS.md section 4).
        Turn it on, or lower ``max_epochs``, for data on which 50 epochs over-fit.

    Attributes
    ----------
    net_, history_, best_epoch_, validation_history_, user_ids_, item_ids_, item_embeddings_,
    seen_items_, feature_encoder_, index_, n_features_in_, feature_names_in_
        As in :class:`DSSMRecommender`.
    sampler_ : NegativeSampler
        The fitted negative sampler.
    bag_builder_ : HistoryBuilder
        With ``user_representation="bag"``: the leave-one-out builder of the users' bags,
        fitted on every positive row.

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
        "negative_sampler": [StrOptions(set(SAMPLERS))],
        "n_negatives": [Interval(Integral, 1, None, closed="left")],
        "popularity_alpha": [Interval(Real, 0, None, closed="left")],
        "exclude_known_positives": ["boolean"],
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
                 loss="softmax", negative_sampler="in_batch", n_negatives=4, popularity_alpha=0.75,
                 exclude_known_positives=True, logq_correction=True, symmetric=True, eval_k=10,
                 max_epochs=50, batch_size=512, lr=3e-3, optimizer="adamw", weight_decay=0.01,
                 early_stopping=False, validation_fraction=0.05, n_iter_no_change=10,
                 refit=False, lr_schedule=None, callbacks=None, id_dropout=0.0,
                 mixed_precision=None, gradient_checkpointing=False, verbose=0, device="cpu",
                 index="auto", index_params=None, random_state=None):
        self.user_col = user_col
        self.item_col = item_col
        self.user_features = user_features
        self.item_features = item_features
        self.sequence_features = sequence_features
        self.time_col = time_col
        self.user_representation = user_representation
        self.item_id_embedding = item_id_embedding
        self.history_bag_size = history_bag_size
        self.rating_transform = rating_transform
        self.embedding_dim = embedding_dim
        self.hidden_dims = hidden_dims
        self.item_hidden_dims = item_hidden_dims
        self.activation = activation
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.dropout_position = dropout_position
        self.init = init
        self.activate_output = activate_output
        self.normalize = normalize
        self.temperature = temperature
        self.ensemble_size = ensemble_size
        self.n_heads = n_heads
        self.n_attention_layers = n_attention_layers
        self.max_sequence_length = max_sequence_length
        self.loss = loss
        self.negative_sampler = negative_sampler
        self.n_negatives = n_negatives
        self.popularity_alpha = popularity_alpha
        self.exclude_known_positives = exclude_known_positives
        self.logq_correction = logq_correction
        self.symmetric = symmetric
        self.eval_k = eval_k
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.refit = refit
        self.lr_schedule = lr_schedule
        self.callbacks = callbacks
        self.id_dropout = id_dropout
        self.mixed_precision = mixed_precision
        self.gradient_checkpointing = gradient_checkpointing
        self.verbose = verbose
        self.device = device
        self.index = index
        self.index_params = index_params
        self.random_state = random_state

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

    # ----------------------------------------------------- generated inputs
    def _features_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """X without the time column (it builds histories but is never a feature)."""
        if self.time_col is not None and self.time_col in X.columns:
            return X.drop(columns=self.time_col)
        return X

    def _fit_generators(self, X: pd.DataFrame, positive: np.ndarray) -> pd.DataFrame:
        """Fit the history / profile / bag builders on the positive rows; return X with the
        generated user inputs (leakage-free for the training rows)."""
        if self.user_representation == "id":
            return X
        view, (user_col, item_col, time_col, *profile_columns) = _string_named(
            X, [self.user_col, self.item_col, self.time_col, *self._profile_columns])
        if self.user_representation == "sequence":
            check_columns(X, [self.time_col], what="X (user_representation='sequence' needs it)")
            self.history_builder_ = HistoryBuilder(
                user_col, item_col, time_col, max_len=self.max_sequence_length,
                output_col=HISTORY).fit(view[positive])
            out = self.history_builder_.transform(view)
        elif self.user_representation == "profile":
            self.profile_encoder_ = UserProfileEncoder(
                profile_columns, user_col=user_col, prefix=PROFILE_PREFIX)
            own = self.profile_encoder_.fit_transform(view[positive])
            rest = self.profile_encoder_.transform(view[~positive])
            out = pd.concat([own, rest]).loc[X.index]
        else:
            self.bag_builder_ = HistoryBuilder(
                user_col, item_col, time_col if time_col in view.columns else None,
                max_len=self.history_bag_size, output_col=BAG, leave_one_out=True,
            ).fit(view[positive])
            out = self.bag_builder_.transform(view)
        return _with_generated(X, view, out)

    def _augment_users(self, users: pd.DataFrame) -> pd.DataFrame:
        builder = {"sequence": "history_builder_", "profile": "profile_encoder_",
                   "bag": "bag_builder_"}.get(self.user_representation)
        if builder is None:
            return users
        view, _ = _string_named(users)
        return _with_generated(users, view, getattr(self, builder).transform(view))

    def _users_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """One row per known user (aligned with the user vocabulary): the user columns of X,
        without the generated ones (``_augment_users`` rebuilds those from everything known)."""
        vocabulary = self.feature_encoder_.feature(self.user_col).vocabulary
        generated = {HISTORY, BAG, *self._profile_names()}
        user_columns = [c for f in self.feature_encoder_.side_features("user")
                        if f.name not in generated for c in f.columns]
        return self._last_rows(X, self.user_col, vocabulary)[user_columns]

    def _user_table(self, X: pd.DataFrame) -> dict:
        return self.feature_encoder_.encode(self._augment_users(self._users_frame(X)), "user")

    def _profile_names(self) -> list:
        """The user-tower columns the profile encoder writes, one per profile column."""
        return [f"{PROFILE_PREFIX}{c}" for c in self._profile_columns]

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

    def _make_sampler(self, seed: int):
        params = {"exclude_known_positives": self.exclude_known_positives, "random_state": seed}
        if self.negative_sampler != "in_batch":
            params["n_negatives"] = self.n_negatives
        if self.negative_sampler == "popularity":
            params["popularity_alpha"] = self.popularity_alpha
        return make_sampler(self.negative_sampler, **params)

    def _validation_scorer(self, augmented, user_pos, item_pos, positive, train_rows, valid_rows):
        """Recall@eval_k of the held-out positives, ranking the catalogue minus training items."""
        held_out = valid_rows[positive[valid_rows]]
        users = np.unique(user_pos[held_out])
        n_items = len(self.item_ids_)
        relevant = sp.csr_matrix(
            (np.ones(len(held_out)), (np.searchsorted(users, user_pos[held_out]), item_pos[held_out])),
            shape=(len(users), n_items))
        seen = sp.csr_matrix(
            (np.ones(len(train_rows)), (user_pos[train_rows], item_pos[train_rows])),
            shape=(len(self.user_ids_), n_items))[users]
        user_inputs = {key: value[users] for key, value in self._user_table(augmented).items()}
        return HeldOutRecall(user_inputs, self.item_inputs_, relevant, seen,
                             min(self.eval_k, n_items), self._device())

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y=None, sample_weight=None) -> TwoTowerRetriever:
        """Learn both towers from positive interactions.

        Parameters
        ----------
        X : DataFrame of shape (n_interactions, n_columns)
            One row per interaction: ``user_col``, ``item_col``, feature columns and (for
            ``user_representation="sequence"``) ``time_col``.
        y : array-like of shape (n_interactions,), default=None
            Optional rating / relevance per row, turned into weights by ``rating_transform``.
        sample_weight : array-like of shape (n_interactions,), default=None
            Multiplies the weights.

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_tower_params()
        self._check_precision()
        X = check_dataframe(X, ensure_non_empty=True)
        check_columns(X, [self.user_col, self.item_col])
        self._record_input(X)
        weights = self._row_weights(X, y, sample_weight)
        all_rows = X
        if weights is not None and self.loss != "bce":
            X, weights = X[weights > 0], weights[weights > 0]
        positive = np.ones(len(X), dtype=bool) if weights is None else weights > 0
        if not positive.any():
            raise ValueError("X has no positive interaction (every weight is <= 0).")
        features = self._features_frame(X)
        seed = self._seed()

        user_codes = pd.factorize(X[self.user_col])[0]
        train_rows, valid_rows = (
            user_holdout_rows(user_codes, self.validation_fraction, check_generator(seed))
            if self.early_stopping else (np.arange(len(X)), np.zeros(0, int)))
        in_train = np.zeros(len(X), dtype=bool)
        in_train[train_rows] = True

        self._profile_columns = (self._find_profile_columns(features)
                                 if self.user_representation == "profile" else [])
        augmented = self._features_frame(self._fit_generators(X, positive & in_train))
        sequences = list(self.sequence_features or [])
        arrays = self._fit_encoder(
            augmented,
            sequence_features=sequences + ([HISTORY] if self.user_representation == "sequence" else []),
            embed_user_id=self.user_representation == "id",
            embed_item_id=self.item_id_embedding,
            extra_user_features=self._profile_names()
            + ([BAG] if self.user_representation == "bag" else []),
        )
        # Rows dropped as negatives (listwise losses) still count as seen at serving time.
        self._fit_catalogue(augmented, seen_rows=all_rows)

        label = positive.astype(np.float32)
        if weights is not None:
            arrays[SAMPLE_WEIGHT] = np.abs(weights).astype(np.float32)
        user_pos = arrays[f"user:{self.user_col}"] - N_RESERVED
        item_pos = arrays[f"item:{self.item_col}"] - N_RESERVED
        fit_rows = positive & in_train
        self.sampler_ = self._make_sampler(seed).fit(
            user_pos[fit_rows], item_pos[fit_rows], n_items=len(self.item_ids_),
            n_users=len(self.user_ids_))

        callbacks = []
        if self.early_stopping:
            callbacks = [(f"valid_recall_at_{self.eval_k}", FullRankingRecall(
                self._validation_scorer(augmented, user_pos, item_pos, positive, train_rows,
                                        valid_rows), f"valid_recall_at_{self.eval_k}"))]
        net = self._make_net(
            RetrievalLoss, self._callbacks(f"valid_recall_at_{self.eval_k}", False, callbacks),
            seed, FixedSplit(train_rows, valid_rows))
        net.set_params(
            criterion__loss=self.loss, criterion__sampler=self.sampler_,
            criterion__catalogue={k: torch.as_tensor(v) for k, v in self.item_inputs_.items()},
            criterion__logq_correction=self.logq_correction, criterion__symmetric=self.symmetric,
            criterion__user_key=f"user:{self.user_col}", criterion__item_key=f"item:{self.item_col}")
        self._train(net, arrays, label, seed)
        if self._refits():
            return self._refit_on_all_rows(all_rows, y, sample_weight)
        if self.early_stopping and self.user_representation != "id":
            # Serve with everything known: refit the history / profile / bag on all positives.
            self._fit_generators(X, positive)
            self.user_inputs_ = self._user_table(augmented)
        self._fit_item_embeddings()
        self._fit_index()
        return self
