"""Machinery shared by the two-tower estimators: feature encoding, the skorch net, embeddings, top-k.

Public estimators (:mod:`skdssm.estimators`) add their loss, their targets and their verbs.
"""

from __future__ import annotations

import threading
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_array, check_is_fitted
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, ProgressBar

from ._distributed import init_process_group, local_rank, rank_seed
from ._features import OOV, FeatureEncoder
from ._onnx import (
    TOWER_FILES,
    VOCABULARY_FILE,
    consumed,
    example_rows,
    export_tower,
    side_specs,
    tower_keys,
    write_vocabularies,
)
from ._skorch import BatchLoader, InteractionDataset, TwoTowerNet
from ._topk import (
    as_id_array,
    candidate_positions,
    candidate_topk,
    check_fill_value,
    exclusion_matrix,
    ids_with_fill,
    item_positions,
    query_user_ids,
)
from ._utils import check_columns, check_dataframe, derive_seed
from ._ids import as_catalogue_ids, plain_ids, versions, warn_foreign_ids
from .exceptions import InconsistentVersionWarning
from .neighbors import make_index
from .nn import ACTIVATIONS, INITIALIZERS, TwoTowerModule, training_generator
from .utils._sklearn_compat import HasMethods, Interval, StrOptions

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
# Fused Adam / AdamW run on the CPU from torch 2.4 on (on CUDA earlier).
FUSED_ADAM = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4)
EMBED_BATCH_SIZE = 4096
# The index is tuned for recall at this k, on the embeddings of at most this many training users.
INDEX_TUNING_K = 10
INDEX_TUNING_USERS = 2000

_dims = [list, tuple]
# Held while a fit seeds torch's default generator and draws its initial weights from it.
_DEFAULT_GENERATOR_LOCK = threading.Lock()


def embed(tower, inputs: dict, device, transform=None) -> np.ndarray:
    """Run a tower (in evaluation mode: fit leaves it there) over encoded inputs, in batches;
    float32 numpy output.

    The tower's mode is not touched: many threads may serve one fitted model at once, and a
    call switching the shared module to evaluation and back would run the others' queries with
    dropout on. ``transform`` (a batch transform, e.g. the users' history gathering) completes
    each batch.
    """
    chunks = []
    loader = BatchLoader(InteractionDataset(inputs), batch_size=EMBED_BATCH_SIZE,
                         transform=transform)
    with torch.no_grad():
        for batch, _ in loader:
            chunks.append(tower({k: v.to(device) for k, v in batch.items()}).float().cpu())
    if not chunks:
        return np.zeros((0, tower.output_dim), dtype=np.float32)
    return torch.cat(chunks).numpy()


class TwoTowerBase(BaseEstimator):
    """Shared parts of :class:`DSSMRecommender` and :class:`TwoTowerRetriever` (not public)."""

    _parameter_constraints: dict = {
        "user_col": [str, Integral],
        "item_col": [str, Integral],
        "user_features": [StrOptions({"auto"}), list, tuple, None],
        "item_features": [StrOptions({"auto"}), list, tuple, None],
        "sequence_features": [list, tuple, None],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dims": _dims,
        "item_hidden_dims": _dims + [None],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "batch_norm": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "dropout_position": [StrOptions({"after", "before"})],
        "init": [StrOptions(set(INITIALIZERS))],
        "activate_output": ["boolean"],
        "normalize": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "ensemble_size": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "n_attention_layers": [Interval(Integral, 1, None, closed="left")],
        "max_sequence_length": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "refit": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "plateau"}), Callback, None],
        "callbacks": [list, None],
        "verbose": ["verbose"],
        "id_dropout": [Interval(Real, 0, 1, closed="left")],
        "mixed_precision": [StrOptions({"bf16", "fp16"}), None],
        "gradient_checkpointing": ["boolean"],
        "distributed": ["boolean"],
        "device": [StrOptions({"cpu", "cuda", "auto"}), torch.device],
        "index": [StrOptions({"auto", "hnsw", "exact"}), HasMethods(["fit", "query"])],
        "random_state": ["random_state"],
    }

    def __getstate__(self):
        # The versions that made the model travel with it (sklearn records its own only for
        # classes of its own modules), so that loading it elsewhere can say what changed.
        return dict(super().__getstate__(), _skdssm_versions=versions())

    def __setstate__(self, state):
        saved = state.pop("_skdssm_versions", None)
        if saved is not None:
            current = versions()
            changed = {name: (version, current.get(name)) for name, version in saved.items()
                       if version != current.get(name)}
            if changed:
                warnings.warn(InconsistentVersionWarning(type(self).__name__, changed),
                              stacklevel=2)
        super().__setstate__(state)
        module = getattr(self.__dict__.get("net_"), "module_", None)
        if module is not None:
            module.eval()  # pickles of earlier versions kept the towers in training mode

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def _store_params(self, arguments: dict) -> None:
        """The body of the estimators' ``__init__``: store every argument under its own name
        and nothing else (sklearn's contract; checks and conversions happen in ``fit``)."""
        for name, value in arguments.items():
            if name != "self":
                setattr(self, name, value)

    # ----------------------------------------------------------- validation
    def _start_fit(self, X) -> pd.DataFrame:
        """The checks every ``fit`` starts with: parameters, tower shapes, device, precision, X."""
        self._validate_params()
        self._check_tower_params()
        self._check_device()
        self._check_precision()
        if self.distributed:
            init_process_group(self._device())
        X = self._check_X(X, reset=True)
        self._check_id_values(X)
        return X

    def _check_id_values(self, X: pd.DataFrame) -> None:
        """Ids are hashable, present and finite in every row of X (also in rows a fit drops,
        whose pairs still count as seen)."""
        for side, col in (("user", self.user_col), ("item", self.item_col)):
            if col not in X.columns:
                continue  # fit reports the missing column itself
            values = X[col]
            try:
                if values.dtype == object:  # other dtypes hold hashable scalars only
                    pd.factorize(values.to_numpy())
            except TypeError as error:
                raise TypeError(f"Column {col!r} holds {side} ids that are neither strings nor "
                                f"numbers ({error}); every id argument must be a string or a "
                                "number.") from error
            bad = values.isna().to_numpy()
            what = "missing value(s) (NaN or None"
            if not bad.any() and pd.api.types.is_float_dtype(values.dtype):
                bad, what = np.isinf(values.to_numpy()), "infinite value(s) (inf"
            if bad.any():
                raise ValueError(f"Column {col!r} ({side} ids) contains {int(bad.sum())} {what}; "
                                 f"first at row position {int(np.argmax(bad))}); every row needs "
                                 f"a {side} id.")

    def _check_X(self, X, *, reset: bool = False) -> pd.DataFrame:
        """X as a DataFrame. A 2-D array is read by column position (columns ``0 .. n-1``),
        which needs ``user_col`` and ``item_col`` to be positions (ints), as the transformers of
        :mod:`skdssm.preprocessing` read arrays; ``reset`` (fit) also requires rows."""
        if isinstance(X, pd.DataFrame) or sp.issparse(X):
            return check_dataframe(X, ensure_non_empty=reset)
        if not all(isinstance(col, Integral) for col in (self.user_col, self.item_col)):
            raise TypeError(
                f"X must be a pandas DataFrame with one row per (user, item) interaction; got "
                f"{type(X).__name__}. An array is read by column position: pass user_col and "
                f"item_col as positions (ints); they are {self.user_col!r} and {self.item_col!r}."
            )
        X = check_array(X, dtype=None, ensure_all_finite=False, ensure_min_samples=int(reset),
                        input_name="X")
        if not reset and X.shape[1] != getattr(self, "n_features_in_", X.shape[1]):
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        needed = max(self.user_col, self.item_col) + 1
        if X.shape[1] < needed:
            raise ValueError(f"X has {X.shape[1]} feature(s), but user_col={self.user_col} and "
                             f"item_col={self.item_col} need at least {needed} columns.")
        return pd.DataFrame(X)

    def _check_tower_params(self) -> None:
        dims = [self.hidden_dims] + ([self.item_hidden_dims] if self.item_hidden_dims else [])
        for name, value in zip(("hidden_dims", "item_hidden_dims"), dims):
            if len(value) == 0 or not all(isinstance(d, Integral) and d > 0 for d in value):
                raise ValueError(f"{name} must be a non-empty sequence of positive ints; got {value!r}.")
        if self.item_hidden_dims and self.item_hidden_dims[-1] != self.hidden_dims[-1]:
            raise ValueError(
                "The towers must output embeddings of the same size: hidden_dims ends with "
                f"{self.hidden_dims[-1]} but item_hidden_dims ends with {self.item_hidden_dims[-1]}."
            )
        if self.sequence_features and self.embedding_dim % self.n_heads:
            raise ValueError(
                f"embedding_dim={self.embedding_dim} must be divisible by n_heads={self.n_heads} "
                "for the self-attention over sequence_features."
            )

    def _device(self) -> str:
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if self.distributed and device.type == "cuda" and device.index is None:
            # One GPU per process: the launcher's LOCAL_RANK picks it.
            return f"cuda:{local_rank()}"
        return str(device)

    def _check_device(self) -> None:
        if self._device().startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device={self.device!r} needs CUDA, but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}: no CUDA build or no visible GPU). Use device='cpu', "
                "or device='auto' to take a GPU when there is one."
            )

    def _check_precision(self) -> None:
        if self.mixed_precision == "fp16" and not self._device().startswith("cuda"):
            raise ValueError(
                "mixed_precision='fp16' needs a CUDA device (float16 autocast with a gradient "
                f"scaler); device is {self._device()!r}. Use mixed_precision='bf16' on CPU."
            )

    # -------------------------------------------------------------- encoding
    def _fit_encoder(self, X: pd.DataFrame, *, sequence_features=None, **encoder_options) -> dict:
        """Learn column roles and vocabularies from X; return its encoded arrays."""
        sequences = self.sequence_features if sequence_features is None else sequence_features
        self.feature_encoder_ = FeatureEncoder(
            self.user_col, self.item_col, self.user_features, self.item_features, sequences,
            self.max_sequence_length, **encoder_options,
        ).fit(X)
        return self._encode_pairs(X)

    def _record_input(self, X: pd.DataFrame) -> None:
        self.n_features_in_ = X.shape[1]
        # As sklearn's validate_data: feature names only when every column is named by a str.
        if all(isinstance(name, str) for name in X.columns):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _encode_pairs(self, X: pd.DataFrame) -> dict:
        encoder = self.feature_encoder_
        return {**encoder.encode(X, "user"), **encoder.encode(X, "item")}

    def _ids_array(self, vocabulary: pd.Index, column: pd.Series) -> np.ndarray:
        return pd.Series(vocabulary.to_numpy(), dtype=object).astype(column.dtype).to_numpy()

    def _fit_catalogue(self, X: pd.DataFrame, seen_rows: pd.DataFrame | None = None) -> None:
        """Known users and items (features of their last row in X) and the pairs seen in fit
        (those of ``seen_rows`` when given, else of X)."""
        encoder = self.feature_encoder_
        user_vocab = encoder.feature(self.user_col).vocabulary
        item_vocab = encoder.feature(self.item_col).vocabulary
        self.user_ids_ = self._ids_array(user_vocab, X[self.user_col])
        self.item_ids_ = self._ids_array(item_vocab, X[self.item_col])
        self.user_inputs_ = self._user_table(X)
        self.item_inputs_ = self._last_rows_inputs(X, self.item_col, item_vocab, "item")
        self.seen_items_ = self._seen_matrix(X if seen_rows is None else seen_rows)

    def _seen_matrix(self, X: pd.DataFrame) -> sp.csr_matrix:
        """Boolean users x items matrix of the (known user, known item) pairs of X."""
        encoder = self.feature_encoder_
        user_vocab = encoder.feature(self.user_col).vocabulary
        item_vocab = encoder.feature(self.item_col).vocabulary
        user_pos = user_vocab.get_indexer(pd.Index(X[self.user_col].to_numpy(dtype=object)))
        item_pos = item_vocab.get_indexer(pd.Index(X[self.item_col].to_numpy(dtype=object)))
        known = (user_pos >= 0) & (item_pos >= 0)
        seen = sp.csr_matrix(
            (np.ones(int(known.sum()), dtype=bool), (user_pos[known], item_pos[known])),
            shape=(len(user_vocab), len(item_vocab)),
        )
        seen.sum_duplicates()
        return seen

    def _last_rows(self, X: pd.DataFrame, id_col, vocabulary: pd.Index) -> pd.DataFrame:
        last = X.drop_duplicates(id_col, keep="last")
        order = pd.Index(last[id_col].to_numpy(dtype=object)).get_indexer(vocabulary)
        return last.iloc[order]

    def _last_rows_inputs(self, X, id_col, vocabulary, side) -> dict:
        return self.feature_encoder_.encode(self._last_rows(X, id_col, vocabulary), side)

    def _user_table(self, X: pd.DataFrame) -> dict:
        """Encoded inputs of every known user (rows aligned with ``user_ids_``)."""
        vocabulary = self.feature_encoder_.feature(self.user_col).vocabulary
        return self._last_rows_inputs(X, self.user_col, vocabulary, "user")

    def _inputs_for(self, side: str, query, warn_foreign: bool = True) -> tuple[dict, np.ndarray]:
        """Encoded inputs of ``query`` (ids or a DataFrame) and the known-id position of each row
        (-1); ``warn_foreign``: warn about unknown ids of another type than the fitted ones."""
        id_col = self.user_col if side == "user" else self.item_col
        known_ids = self.user_ids_ if side == "user" else self.item_ids_
        stored = self.user_inputs_ if side == "user" else self.item_inputs_
        if isinstance(query, pd.DataFrame):
            required = self.feature_encoder_.required_columns(side)
            missing = [c for c in required if c not in query.columns]
            if missing:
                raise ValueError(
                    f"Column {missing[0]!r} is missing from the {side} frame; it has columns "
                    f"{list(query.columns)}. Pass every {side} feature column "
                    f"({required}), or an array of {side} ids to use the features seen in fit."
                )
            ids = query[id_col].to_numpy(dtype=object)
            positions = pd.Index(known_ids).get_indexer(pd.Index(ids))
            if warn_foreign:
                warn_foreign_ids(side, ids, positions, known_ids)
            return self.feature_encoder_.encode(query, side), positions
        # A list keeps its values as given: np.asarray([1, "x"]) would turn 1 into "1".
        ids = query if isinstance(query, np.ndarray) else np.asarray(query, dtype=object)
        if ids.ndim != 1:
            raise ValueError(f"{side} ids must be a 1-D array; got shape {ids.shape}.")
        positions = pd.Index(known_ids).get_indexer(pd.Index(ids.astype(object)))
        if warn_foreign:
            warn_foreign_ids(side, ids, positions, known_ids)
        known = positions >= 0
        inputs = {}
        for key, table in stored.items():
            rows = table[np.where(known, positions, 0)]
            # Unknown ids: OOV codes for single-valued features, empty lists, zero dense values.
            blank = OOV if (table.ndim == 1 and table.dtype.kind == "i") else 0
            rows[~known] = blank
            inputs[key] = rows
        return inputs, positions

    # ----------------------------------------------------------------- net
    def _module_params(self) -> dict:
        return {
            "user_schema": self.feature_encoder_.schema("user"),
            "item_schema": self.feature_encoder_.schema("item"),
            "embedding_dim": self.embedding_dim,
            "hidden_dims": tuple(self.hidden_dims),
            "item_hidden_dims": tuple(self.item_hidden_dims) if self.item_hidden_dims else None,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "dropout": self.dropout,
            "dropout_position": self.dropout_position,
            "activate_output": self.activate_output,
            "init": self.init,
            "n_heads": self.n_heads,
            "n_attention_layers": self.n_attention_layers,
            "normalize": self.normalize,
            "temperature": self.temperature,
            "ensemble_size": self.ensemble_size,
            "gradient_checkpointing": self.gradient_checkpointing,
            "id_dropout": self.id_dropout,
        }

    def _callbacks(self, monitor: str, lower_is_better: bool, scoring: list) -> list:
        callbacks = list(scoring) if self.early_stopping else []
        if self.early_stopping:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor=monitor, lower_is_better=lower_is_better,
                patience=self.n_iter_no_change, load_best=True)))
        if self.lr_schedule == "cosine":
            callbacks.append(("lr_schedule", LRScheduler(
                "CosineAnnealingLR", T_max=self.max_epochs)))
        elif self.lr_schedule == "plateau":
            # Watch the score early stopping watches (it is recorded by then: scoring
            # callbacks come first); without a validation split, the training loss.
            watched, lower = ((monitor, lower_is_better) if self.early_stopping
                              else ("train_loss", True))
            callbacks.append(("lr_schedule", LRScheduler(
                "ReduceLROnPlateau", monitor=watched, mode="min" if lower else "max",
                patience=1, factor=0.5)))
        elif self.lr_schedule is not None:
            callbacks.append(("lr_schedule", self.lr_schedule))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks + list(self.callbacks or [])

    def _optimizer_params(self) -> dict:
        params = {"weight_decay": self.weight_decay} if self.weight_decay else {}
        if self.optimizer in ("adam", "adamw") and FUSED_ADAM:
            # One fused kernel for the whole update: about 3x faster steps on CPU than the
            # per-parameter loop (benchmarks/RESULTS.md), same algorithm.
            params["fused"] = True
        return {f"optimizer__{key}": value for key, value in params.items()}

    def _make_net(self, criterion, callbacks: list, seed: int, train_split,
                  transform=None) -> TwoTowerNet:
        optimizer = OPTIMIZERS.get(self.optimizer, self.optimizer)
        shards = {}
        if self.distributed:
            shards = {"iterator_train__rank": torch.distributed.get_rank(),
                      "iterator_train__world_size": torch.distributed.get_world_size()}
        return TwoTowerNet(
            module=TwoTowerModule,
            criterion=criterion,
            optimizer=optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=BatchLoader,
            iterator_valid=BatchLoader,
            iterator_train__shuffle=True,
            iterator_train__seed=seed,
            iterator_train__transform=transform,
            iterator_valid__transform=transform,
            train_split=train_split if self.early_stopping else None,
            callbacks=callbacks,
            device=self._device(),
            verbose=self.verbose,
            mixed_precision=self.mixed_precision,
            distributed=self.distributed,
            **shards,
            **{f"module__{k}": v for k, v in self._module_params().items()},
            **self._optimizer_params(),
        )

    def _train(self, net: TwoTowerNet, arrays: dict, y, seed: int) -> None:
        """Fit the skorch net (``initialize`` then ``partial_fit``, as ``NeuralNet.fit``) with
        every source of randomness seeded, leaving torch's default generator as it was.

        The weights are drawn from torch's default generator (torch's initialisers use it), which
        is one per process: the initialisation runs seeded under a lock, so fits in threads draw
        their own weights. The masks drawn while training come from a generator of this fit's own
        (:func:`~skdssm.nn.training_generator`), the batch order from the batch loader's. The
        module is left in evaluation mode, ready to serve.
        """
        device = torch.device(net.device)
        devices = []
        if device.type == "cuda":
            devices = [torch.cuda.current_device() if device.index is None else device.index]
        with _DEFAULT_GENERATOR_LOCK, torch.random.fork_rng(devices=devices):
            # Each rank draws its own masks and negatives; the data-parallel wrapper gives every
            # rank rank 0's initial weights.
            torch.manual_seed(rank_seed(seed) if self.distributed else seed)
            net.initialize()
            # The masks' stream continues the weights' one (seeding it with ``seed`` as well
            # would draw the first masks from the very numbers that drew the first weights).
            mask_seed = int(torch.randint(0, 2**62, ()).item())
        generator = torch.Generator(device=net.device).manual_seed(mask_seed)
        with training_generator(generator):
            net.partial_fit(arrays, y)
        net.module_.eval()
        self.net_ = net
        self.history_ = net.history
        self.best_epoch_ = (dict(net.callbacks_)["early_stopping"].best_epoch_
                            if self.early_stopping else None)
        self.validation_history_ = None

    def _refits(self) -> bool:
        return self.early_stopping and self.refit

    def _refit_on_all_rows(self, *fit_args):
        """``refit=True``: early stopping has chosen the number of epochs; train a fresh model on
        every row (the validation rows included) for that many epochs and become it."""
        best_epoch, validation = max(self.best_epoch_, 1), self.history_
        full = clone(self).set_params(early_stopping=False, refit=False, max_epochs=best_epoch)
        full.fit(*fit_args)
        params = self.get_params(deep=False)
        vars(self).update({key: value for key, value in vars(full).items() if key not in params})
        self.best_epoch_ = best_epoch
        self.validation_history_ = validation
        return self

    def _seed(self) -> int:
        return derive_seed(self.random_state)

    # ----------------------------------------------------------- embeddings
    def _embed(self, side: str, inputs: dict, transform=None) -> np.ndarray:
        module = self.net_.module_
        tower = module.user_tower if side == "user" else module.item_tower
        return embed(tower, inputs, self.net_.device, transform)

    def _user_queries(self, users, history=None):
        """Tower inputs of the query users, their known-user positions (-1), the batch transform
        that completes the inputs (None here) and the items of ``history`` per query row."""
        if history is not None:
            raise ValueError(f"{type(self).__name__} has no history-based user tower; history= "
                             "is for TwoTowerRetriever with user_representation 'bag', "
                             "'sequence' or 'profile'.")
        inputs, positions = self._inputs_for("user", users)
        return inputs, positions, None, None

    def _embed_users(self, users, history=None):
        """Embeddings of the query users, their positions and the ``history`` item matrix."""
        inputs, positions, transform, extra_seen = self._user_queries(users, history)
        return self._embed("user", inputs, transform), positions, extra_seen

    def transform_users(self, users, history=None) -> np.ndarray:
        """Embeddings of users, one row per id (or per row of a users frame).

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            Ids are looked up in the users seen in fit (their features from their last row); an
            unseen id gets the out-of-vocabulary embedding and no features. A DataFrame must hold
            ``user_col`` and every user feature column; its features are used as given, so new
            users are embedded from their features (cold start).
        history : DataFrame, default=None
            ``TwoTowerRetriever`` with a history-based user tower (``"bag"``, ``"sequence"``,
            ``"profile"``): rows of ``user_col``, ``item_col`` (and ``time_col`` when the model
            was fitted with one) that describe the query users by the items they interacted
            with (fold-in, as implicit's ``recalculate_user``). For a user unseen in fit it is
            their history; for a user seen in fit it replaces the stored one. Query users absent
            from ``history`` keep their stored history; items unknown to the model are ignored
            with a warning.

        Returns
        -------
        ndarray of shape (n_users, embedding_size)
            L2-normalised when ``normalize=True``.
        """
        check_is_fitted(self)
        return self._embed_users(users, history)[0]

    def transform_items(self, items=None) -> np.ndarray:
        """Embeddings of items: the fitted catalogue (``items=None``, rows aligned with ``item_ids_``),
        an array of item ids, or a DataFrame holding ``item_col`` and the item feature columns."""
        check_is_fitted(self)
        if items is None:
            return self.item_embeddings_
        return self._embed("item", self._inputs_for("item", items)[0])

    def _fit_item_embeddings(self) -> None:
        self.item_embeddings_ = self._embed("item", self.item_inputs_)

    def export_embeddings(self, path) -> None:
        """Write the user and item embeddings of everything seen in fit, with their ids.

        ``.npz``: arrays ``user_ids``, ``user_embeddings``, ``item_ids``, ``item_embeddings``
        (``numpy.load``, without ``allow_pickle``: string ids are stored as a fixed-width unicode
        array, ids of mixed types as their strings). ``.parquet``: one table with columns
        ``entity`` ("user"/"item"), ``id`` and ``e0 .. e{d-1}`` (needs pyarrow; ids are written as
        strings when user and item ids have different types).

        Parameters
        ----------
        path : str or path-like
            Destination ending in ``.npz`` or ``.parquet``.
        """
        check_is_fitted(self)
        path = str(path)
        users = self.transform_users(self.user_ids_)
        if path.endswith(".npz"):
            np.savez(path, user_ids=plain_ids(self.user_ids_), user_embeddings=users,
                     item_ids=plain_ids(self.item_ids_), item_embeddings=self.item_embeddings_)
        elif path.endswith(".parquet"):
            same_type = self.user_ids_.dtype == self.item_ids_.dtype
            frames = []
            for entity, ids, vectors in (("user", self.user_ids_, users),
                                         ("item", self.item_ids_, self.item_embeddings_)):
                frame = pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])
                frame.insert(0, "id", ids if same_type else ids.astype(str))
                frame.insert(0, "entity", entity)
                frames.append(frame)
            pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
        else:
            raise ValueError(f"path must end with '.npz' or '.parquet'; got {path!r}.")

    # ------------------------------------------------------------- serving
    def encode_users(self, users, history=None) -> dict:
        """The user tower's inputs for ``users``: exactly the arrays the tower consumes.

        What :meth:`transform_users` feeds the user tower, and what the exported
        ``user_tower.onnx`` (:meth:`export_onnx`) takes, input by input.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As in :meth:`transform_users`.
        history : DataFrame, default=None
            As in :meth:`transform_users`.

        Returns
        -------
        inputs : dict of str to ndarray
            Keyed ``"user:<feature>"``: int64 codes of categorical features (n_users,), int64
            padded blocks of multi-valued and sequence features (n_users, max_len), float32
            ``"user:dense"`` (n_users, n_dense_features), and the retriever's generated inputs
            (``"user:history_bag"`` flat codes with ``"user:history_bag:offsets"``,
            ``"user:history"``, ``"user:profile"``). Codes: 0 padding, 1 out of vocabulary,
            ``i + 2`` for the i-th vocabulary value (``vocabularies.json`` of
            :meth:`export_onnx`).

        Examples
        --------
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm import TwoTowerRetriever
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
        ...                          random_state=0)
        >>> positives = data.frame[data.frame["label"] == 1].drop(columns=["label", "rating"])
        >>> model = TwoTowerRetriever(hidden_dims=(16,), max_epochs=1, random_state=0)
        >>> sorted(model.fit(positives).encode_users([1, 2]))
        ['user:age_group', 'user:dense', 'user:history_bag', 'user:history_bag:offsets', 'user:segment']
        """
        check_is_fitted(self)
        inputs, _, transform, _ = self._user_queries(users, history)
        if transform is not None:
            inputs = {**inputs, **transform.arrays(inputs)}
        return consumed(inputs, tower_keys(self.net_.module_.user_tower))

    def encode_items(self, items) -> dict:
        """The item tower's inputs for ``items``: exactly the arrays the tower consumes.

        Parameters
        ----------
        items : array-like of item ids, or DataFrame
            As in :meth:`transform_items` (ids take the features seen in fit, a frame its own).

        Returns
        -------
        inputs : dict of str to ndarray
            Keyed ``"item:<feature>"``, laid out as in :meth:`encode_users`.

        Examples
        --------
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm import TwoTowerRetriever
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
        ...                          random_state=0)
        >>> positives = data.frame[data.frame["label"] == 1].drop(columns=["label", "rating"])
        >>> model = TwoTowerRetriever(hidden_dims=(16,), max_epochs=1, random_state=0)
        >>> {key: value.shape for key, value in model.fit(positives).encode_items([3, 4]).items()}
        {'item:item_id': (2,), 'item:category': (2,), 'item:tags': (2, 3), 'item:dense': (2, 1)}
        """
        check_is_fitted(self)
        return consumed(self._inputs_for("item", items)[0],
                        tower_keys(self.net_.module_.item_tower))

    def _generated_input_specs(self, side: str) -> list:
        """Descriptions of the inputs the estimator generates itself (none here)."""
        return []

    def export_onnx(self, directory) -> None:
        """Write both towers as ONNX graphs and the vocabularies that encode their inputs.

        A service in any language with an ONNX runtime can then embed users (and new items)
        where requests arrive: encode the raw values with ``vocabularies.json`` into the
        inputs :meth:`encode_users` / :meth:`encode_items` produce, run the graph, and query
        an index of the item embeddings (:meth:`export_embeddings`).

        Parameters
        ----------
        directory : str or path-like
            Created if needed. Receives ``user_tower.onnx`` and ``item_tower.onnx`` (one input
            per key of ``encode_users`` / ``encode_items``, named like it, with a dynamic batch
            axis; one float32 output ``user_embedding`` / ``item_embedding`` of shape
            (batch, embedding size), what :meth:`transform_users` / :meth:`transform_items`
            return) and ``vocabularies.json``: for each side, each input's name, kind, source
            columns, dtype, shape and vocabulary (code ``i + 2`` for the i-th value, 1 for an
            unseen value, 0 for padding), and how the retriever's history inputs are built.
            A tower over 2 GiB (ONNX's protobuf limit) keeps its weights beside the graph,
            in ``user_tower.onnx.data`` / ``item_tower.onnx.data``.

        Notes
        -----
        Needs the ``onnx`` extra (``pip install skdssm[onnx]``: onnx, onnxruntime and
        onnxscript). The towers are exported with ``torch.onnx.export(dynamo=True)``; the
        older TorchScript exporter cannot export ``embedding_bag`` with a padding index, which
        multi-valued features and history bags use. Every user representation exports: the
        history bag is an input (flat item codes plus each row's offset), as are the
        behaviour sequence and the profile; the service builds them from the user's items as
        ``vocabularies.json`` describes (the retriever's ``history=`` fold-in, done outside
        the graph).

        Examples
        --------
        >>> import tempfile, os
        >>> from skdssm.datasets import make_interactions
        >>> from skdssm import TwoTowerRetriever
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=5,
        ...                          random_state=0)
        >>> positives = data.frame[data.frame["label"] == 1].drop(columns=["label", "rating"])
        >>> model = TwoTowerRetriever(hidden_dims=(16,), max_epochs=1, random_state=0)
        >>> with tempfile.TemporaryDirectory() as directory:  # doctest: +SKIP
        ...     model.fit(positives).export_onnx(directory)
        ...     sorted(os.listdir(directory))
        ['item_tower.onnx', 'user_tower.onnx', 'vocabularies.json']
        """
        check_is_fitted(self)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        module = self.net_.module_
        examples = {"user": self.encode_users(example_rows(self.user_ids_)),
                    "item": self.encode_items(example_rows(self.item_ids_))}
        sides = {}
        for side, tower in (("user", module.user_tower), ("item", module.item_tower)):
            inputs, output = examples[side], f"{side}_embedding"
            export_tower(tower, inputs, directory / TOWER_FILES[side], output)
            order = list(inputs)
            specs = [*side_specs(self.feature_encoder_, side, inputs),
                     *self._generated_input_specs(side)]
            sides[side] = {"file": TOWER_FILES[side],
                           "inputs": sorted(specs, key=lambda spec: order.index(spec["name"])),
                           "output": output, "embedding_dim": int(tower.output_dim),
                           "normalized": bool(self.normalize)}
        write_vocabularies(directory / VOCABULARY_FILE, sides)

    # ------------------------------------------------------------------ top-k
    def _check_k(self, k, name: str = "k") -> int:
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{name} must be a positive int; got {k!r}.")
        n_items = len(self.item_ids_)
        if k > n_items:
            raise ValueError(
                f"Expected {name} <= number of items in the catalogue, but {name} = {k} and the "
                f"catalogue has {n_items} items."
            )
        return int(k)

    def _exclusions(self, positions: np.ndarray) -> sp.csr_matrix:
        """Seen-in-fit items of each query row (empty rows for users unknown to fit)."""
        known = positions >= 0
        rows = self.seen_items_[np.where(known, positions, 0)]
        return sp.diags(known.astype(np.float32)) @ rows.astype(np.float32)

    # ---------------------------------------------------------------- index
    def _fit_index(self) -> None:
        """Build ``index_`` over ``item_embeddings_``; an HNSW index is tuned with the embeddings
        of (a sample of) the training users as queries."""
        index = make_index(self.index, len(self.item_ids_))
        if index.get_params().get("random_state", 0) is None:
            index.set_params(random_state=self._seed())
        queries = None
        if hasattr(index, "target_recall"):
            rng = np.random.default_rng(self._seed())
            n_users = len(self.user_ids_)
            rows = rng.choice(n_users, min(n_users, INDEX_TUNING_USERS), replace=False)
            queries = self._embed_users(self.user_ids_[rows])[0]
        self.index_ = index.fit(self.item_embeddings_, queries=queries,
                                k=min(INDEX_TUNING_K, len(self.item_ids_)))

    def kneighbors(self, users, n_neighbors: int = 10, return_distance: bool = True,
                   history=None):
        """Nearest catalogue items of each user in embedding space, served by ``index_``.

        Follows :meth:`sklearn.neighbors.NearestNeighbors.kneighbors`: rows are queries,
        columns neighbours, nearest first. Only the items taken out by :meth:`remove_items` are
        left out (``predict_topk`` also leaves out the items a user has seen).

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As in :meth:`transform_users`.
        n_neighbors : int, default=10
            At most the catalogue size less the removed items.
        return_distance : bool, default=True
            Also return the distances.
        history : DataFrame, default=None
            As in :meth:`transform_users`.

        Returns
        -------
        neigh_dist : ndarray of shape (n_users, n_neighbors), only when ``return_distance=True``
            Cosine distances ``1 - user . item`` (``1 -`` the dot product when
            ``normalize=False``), ascending.
        neigh_ind : ndarray of shape (n_users, n_neighbors)
            Positions in ``item_ids_`` (``item_ids_[neigh_ind]`` gives the ids).
        """
        check_is_fitted(self)
        n_neighbors = self._check_k(n_neighbors, "n_neighbors")
        removed = self._removed_items()
        n_removed = 0 if removed is None else int(np.count_nonzero(removed))
        if n_neighbors > len(self.item_ids_) - n_removed:
            raise ValueError(
                f"Expected n_neighbors <= number of items not removed, but n_neighbors = "
                f"{n_neighbors} and {n_removed} of the catalogue's {len(self.item_ids_)} items "
                "are removed (remove_items); ask for fewer, or index_items them back.")
        queries = self._embed_users(users, history)[0]
        distances, indices = self.index_.query(queries, n_neighbors)
        return (distances, indices) if return_distance else indices

    def index_items(self, items: pd.DataFrame):
        """Embed new or changed items with the fitted item tower and add them to the index.

        No retraining: new item ids are appended to ``item_ids_`` (their id embedding is the
        out-of-vocabulary one, so they are served from their features: cold start), known ids get
        their features and embedding replaced. ``predict_topk`` and ``kneighbors`` return them
        from then on; ``seen_items_`` gains an empty column per new item. Known ids that
        :meth:`remove_items` took out are recommended again.

        Parameters
        ----------
        items : DataFrame
            One row per item: ``item_col`` and every item feature column (the last row of a
            repeated id wins).

        Returns
        -------
        self
        """
        check_is_fitted(self)
        items = check_dataframe(items, what="items")
        check_columns(items, [self.item_col], what="items")
        items = items.drop_duplicates(self.item_col, keep="last")
        inputs, positions = self._inputs_for("item", items, warn_foreign=False)
        new, known = positions < 0, positions >= 0
        # Checked before anything changes, so a refused id leaves the catalogue as it was.
        new_ids = as_catalogue_ids(items[self.item_col].to_numpy(dtype=object)[new],
                                    self.item_ids_, f"item id ({self.item_col!r})")
        vectors = self._embed("item", inputs)
        replaced = positions[known]
        if replaced.size:
            self.item_embeddings_ = self.item_embeddings_.copy()
            self.item_embeddings_[replaced] = vectors[known]
            self.item_inputs_ = {key: value.copy() for key, value in self.item_inputs_.items()}
            for key, value in self.item_inputs_.items():
                value[replaced] = inputs[key][known]
            self.index_.replace_items(replaced, vectors[known])
        if new.any():
            self.item_ids_ = np.concatenate([self.item_ids_, new_ids])
            self.item_inputs_ = {key: np.concatenate([value, inputs[key][new]])
                                 for key, value in self.item_inputs_.items()}
            self.item_embeddings_ = np.concatenate([self.item_embeddings_, vectors[new]])
            self.seen_items_ = sp.hstack(
                [self.seen_items_, sp.csr_matrix((self.seen_items_.shape[0], int(new.sum())),
                                                 dtype=bool)], format="csr")
            self.index_.add_items(vectors[new])
        return self

    def predict_topk(self, users, k: int = 10, exclude_seen: bool = True,
                     return_scores: bool = False, fill_value=None, history=None,
                     candidates=None, exclude_items=None):
        """Ids of the ``k`` best items of the catalogue for each user, best first.

        The catalogue (``item_ids_``, including items added by :meth:`index_items`, without those
        taken out by :meth:`remove_items`) is ranked by the dot product of user and item
        embeddings (the cosine when ``normalize=True``) through ``index_``: exact search, or HNSW
        at the recall tuned in fit. Seen and ``exclude_items`` items are left out by
        over-fetching ``k`` plus the user's number of excluded items and dropping them, so every
        user with enough eligible items gets ``k`` of them.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As in :meth:`transform_users`.
        k : int, default=10
            Number of items per user; at most the catalogue size.
        exclude_seen : bool, default=True
            Leave out the items each user had in the data passed to ``fit``, and the items
            ``history`` gives them.
        return_scores : bool, default=False
            Also return the scores (the cosine / dot product) of the returned items.
        fill_value : scalar, default=None
            Users with fewer than ``k`` eligible items (they saw almost the whole catalogue, or
            few ``candidates`` are left) get ``fill_value`` in the remaining slots, always last,
            and a score of ``-inf``; the array keeps the dtype of ``item_ids_``. None picks the
            dtype's missing-value marker: ``-1`` for signed integer ids, the largest value for
            unsigned ones, NaN for floats, NaT for datetimes, ``None`` for object (string) ids.
            A fill_value the dtype cannot hold exactly is a ValueError, and so is one that is an
            item id when a slot has to be filled.
        history : DataFrame, default=None
            The query users' interactions, as in :meth:`transform_users`.
        candidates : array-like of item ids, default=None
            Rank only these items (implicit's ``items=``: a shortlist, the items in stock in
            one shop). They are scored exactly, by a matrix product over the candidates, under
            every index, so the cost grows with their number: to leave a few items out of the
            whole catalogue use ``exclude_items``, which goes through the index. Every
            candidate must be in ``item_ids_`` (a ValueError names the others); removed ones
            are not returned.
        exclude_items : array-like of item ids, dict or DataFrame, default=None
            Items never returned, on top of the seen ones (implicit's ``filter_items``): an
            array of ids for every user, a dict ``{user id: item ids}`` or a DataFrame of
            ``user_col``, ``item_col`` rows for some users (every query row of that user). Ids
            not in the catalogue are ignored.

        Returns
        -------
        item_ids : ndarray of shape (n_users, k)
            Same dtype as ``item_ids_``.
        scores : ndarray of shape (n_users, k), only when ``return_scores=True``
            float32, descending; ``-inf`` in the filled slots.
        """
        check_is_fitted(self)
        k = self._check_k(k)
        fill_value = check_fill_value(fill_value, self.item_ids_.dtype)
        shortlist = None if candidates is None else candidate_positions(candidates, self.item_ids_)
        queries, positions, extra_seen = self._embed_users(users, history)
        exclude = None
        if exclude_seen:
            exclude = self._exclusions(positions)
            if extra_seen is not None:
                exclude = exclude + extra_seen.astype(np.float32)
        if exclude_items is not None:
            extra = exclusion_matrix(exclude_items, query_user_ids(users, self.user_col),
                                     self.item_ids_, self.user_col, self.item_col)
            exclude = extra if exclude is None else exclude + extra.astype(np.float32)
        if shortlist is None:
            distances, index = self.index_.query(queries, k, exclude=exclude)
        else:
            distances, index = candidate_topk(queries, self.item_embeddings_, k, shortlist,
                                              exclude, self._removed_items())
        return self._topk_answer(distances, index, return_scores, fill_value)

    def _topk_answer(self, distances, index, return_scores: bool, fill_value):
        """Item ids (typed, ``fill_value`` where ``index`` is -1) and scores (``-inf`` there)."""
        scores = np.where(index >= 0, 1.0 - distances, -np.inf).astype(np.float32)
        ids = ids_with_fill(self.item_ids_, index, fill_value)
        return (ids, scores) if return_scores else ids

    def _removed_items(self) -> np.ndarray | None:
        """Boolean mask over ``item_ids_`` of the removed items (None: the index cannot remove)."""
        return getattr(self.index_, "removed_", None)

    def similar_items(self, items, k: int = 10, return_scores: bool = False, fill_value=None):
        """The ``k`` catalogue items nearest to each query item by item embeddings, best first.

        "More like this" (implicit's and TFRS's ``similar_items``): the query items' embeddings
        are searched in ``index_``, scored by the dot product (the cosine when
        ``normalize=True``); the query item itself and the items taken out by
        :meth:`remove_items` are left out.

        Parameters
        ----------
        items : array-like of item ids, or DataFrame
            Ids of the catalogue use the embeddings ``index_`` holds (an id unknown to the model
            gets the out-of-vocabulary embedding, as in :meth:`transform_items`). A DataFrame
            holds ``item_col`` and every item feature column: each row is embedded by the item
            tower from its features, so a new item described by features works (it is not in
            the catalogue, so nothing is left out for it; a row whose id is in the catalogue
            leaves that item out).
        k : int, default=10
            Number of items per query item; at most the catalogue size.
        return_scores : bool, default=False
            Also return the scores (the cosine / dot product with the query item).
        fill_value : scalar, default=None
            For rows with fewer than ``k`` eligible items, as in :meth:`predict_topk`.

        Returns
        -------
        item_ids : ndarray of shape (n_items, k)
            Same dtype as ``item_ids_``.
        scores : ndarray of shape (n_items, k), only when ``return_scores=True``

        Examples
        --------
        >>> from skdssm import DSSMRecommender
        >>> from skdssm.datasets import make_interactions
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=6,
        ...                          random_state=0)
        >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
        >>> model = DSSMRecommender(max_epochs=1, early_stopping=False, random_state=0).fit(X, y)
        >>> similar = model.similar_items([model.item_ids_[0]], k=3)
        >>> similar.shape, bool(model.item_ids_[0] in similar)
        ((1, 3), False)
        """
        check_is_fitted(self)
        k = self._check_k(k)
        fill_value = check_fill_value(fill_value, self.item_ids_.dtype)
        inputs, positions = self._inputs_for("item", items)
        known = positions >= 0
        if isinstance(items, pd.DataFrame):
            vectors = self._embed("item", inputs)
        else:
            # Catalogue items are queried with the very vectors the index holds.
            vectors = np.empty((len(positions), self.item_embeddings_.shape[1]), dtype=np.float32)
            vectors[known] = self.item_embeddings_[positions[known]]
            vectors[~known] = self._embed("item", {key: value[~known]
                                                   for key, value in inputs.items()})
        rows = np.flatnonzero(known)
        itself = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, positions[known])),
                               shape=(len(positions), len(self.item_ids_)))
        distances, index = self.index_.query(vectors, k, exclude=itself)
        return self._topk_answer(distances, index, return_scores, fill_value)

    def remove_items(self, ids):
        """Stop recommending items (out of stock, withdrawn), without refitting.

        The items leave every answer of :meth:`predict_topk`, :meth:`similar_items` and
        :meth:`kneighbors` (``index_`` masks them for exact search and marks them deleted in an
        HNSW graph), but stay in ``item_ids_``, ``item_embeddings_`` and ``seen_items_``, and can
        still be queried (``transform_items``, ``similar_items`` of a removed item). Passing
        them to :meth:`index_items` brings them back. The removals persist through pickle and
        joblib; which items are removed is ``item_ids_[index_.removed_]``.

        Parameters
        ----------
        ids : array-like of item ids
            Items of the catalogue (``item_ids_``); an unknown id is a ValueError naming it.
            Removing an item twice is a no-op.

        Returns
        -------
        self

        Examples
        --------
        >>> from skdssm import DSSMRecommender
        >>> from skdssm.datasets import make_interactions
        >>> data = make_interactions(n_users=30, n_items=20, interactions_per_user=6,
        ...                          random_state=0)
        >>> X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
        >>> model = DSSMRecommender(max_epochs=1, early_stopping=False, random_state=0).fit(X, y)
        >>> best = model.predict_topk([1], k=1, exclude_seen=False)[0, 0]
        >>> after = model.remove_items([best]).predict_topk([1], k=1, exclude_seen=False)
        >>> bool(after[0, 0] == best)
        False
        """
        check_is_fitted(self)
        values = as_id_array(ids, "ids")
        positions = item_positions(self.item_ids_, values)
        unknown = values[positions < 0]
        if len(unknown):
            raise ValueError(
                f"{len(unknown)} ids passed to remove_items are not in the catalogue (item_ids_),"
                f" e.g. {list(unknown[:5])}; remove_items takes ids of items seen in fit or added"
                " by index_items.")
        if not callable(getattr(self.index_, "remove_items", None)):
            raise TypeError(
                f"The index {type(self.index_).__name__} has no remove_items method; fit with "
                "index='exact', 'hnsw' or an ExactIndex / HNSWIndex / ShardedIndex object to "
                "remove items.")
        self.index_.remove_items(positions.astype(np.int64))
        return self
