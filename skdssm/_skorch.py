"""skorch plumbing shared by the estimators: dataset, mini-batch loader, validation split, net.

skorch owns the training loop, history, callbacks and parameter routing. This module only
overrides the documented hooks: the dataset is indexed a whole mini-batch at a time (skorch's
default ``DataLoader`` would index and collate sample by sample, which dominates the cost of a
small two-tower model), the validation split is seeded and stratified, and ``get_loss`` hands the
module's outputs, the targets and the batch to the criterion.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNet
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_tensor
from torch.nn.parallel import DistributedDataParallel

from ._distributed import mean_over_ranks
from ._features import (
    CANDIDATE_LOG_Q,
    CANDIDATE_POSITION,
    CANDIDATES,
    ITEM_POSITION,
    KNOWN_POSITIVE,
    USER_LOG_Q,
    USER_POSITION,
)

SAMPLE_WEIGHT = "sample_weight"


class InteractionDataset(torch.utils.data.Dataset):
    """Named feature arrays (one row per interaction) and an optional target.

    ``X`` and ``y`` stay available as attributes (skorch's scoring callbacks read them); indexing
    with an index tensor returns a whole batch ``(dict of tensors, target tensor)``.
    """

    def __init__(self, X: dict, y=None):
        self.X = X
        self.y = y
        self._tensors = {key: torch.as_tensor(value) for key, value in X.items()}
        self._target = torch.as_tensor(np.asarray(y, dtype=np.float32)) if y is not None else None
        lengths = {len(v) for v in self._tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"All feature arrays must have the same length; got {sorted(lengths)}.")
        self._length = lengths.pop()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        batch = {key: value[index] for key, value in self._tensors.items()}
        target = self._target[index] if self._target is not None else torch.zeros(0)
        return batch, target

    def subset(self, index: np.ndarray) -> InteractionDataset:
        return InteractionDataset(
            {key: value[index] for key, value in self.X.items()},
            None if self.y is None else np.asarray(self.y)[index],
        )


class BatchLoader:
    """Iterate over mini-batches by slicing every tensor at once; seeded shuffling.

    Used as skorch's ``iterator_train`` / ``iterator_valid``: skorch calls it with the dataset and
    ``batch_size`` (plus ``shuffle`` / ``seed`` / ``transform`` routed as
    ``iterator_train__shuffle`` etc.). ``transform(batch) -> batch`` adds what a batch needs beyond
    its rows (the users' histories, sampled negatives); it runs on the CPU, before skorch moves
    the batch to the device.

    ``world_size > 1`` (data-parallel training): every rank shuffles with the same seed, so all
    ranks walk through the same global batches of ``batch_size`` rows, and each yields its
    ``rank``-th share of every global batch (``torch.tensor_split``; shares differ by at most one
    row). Every rank thus takes the same number of steps; a last global batch with fewer rows than
    ranks is dropped, so no rank gets an empty one.
    """

    def __init__(self, dataset: InteractionDataset, batch_size: int = 256, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False, transform=None,
                 rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else seed)

    def _stop(self) -> int:
        """End of the last row position iterated (the tail a rank could not share is left out)."""
        n = len(self.dataset)
        tail = n % self.batch_size
        if self.drop_last or (tail and tail < self.world_size):
            return n - tail
        return n

    def __len__(self) -> int:
        return -(-self._stop() // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, self._stop(), self.batch_size):
            rows = order[start:start + self.batch_size]
            if self.world_size > 1:
                rows = torch.tensor_split(rows, self.world_size)[self.rank]
            batch, target = self.dataset[rows]
            yield (batch if self.transform is None else self.transform(batch)), target


class ValidationSplit:
    """skorch ``train_split``: hold out a seeded, optionally stratified fraction of the rows."""

    def __init__(self, fraction: float, seed: int, stratify: bool = True):
        self.fraction = fraction
        self.seed = seed
        self.stratify = stratify

    def __call__(self, dataset: InteractionDataset, y=None, **fit_params):
        rows = np.arange(len(dataset))
        labels = dataset.y if self.stratify else None
        try:
            train, valid = train_test_split(rows, test_size=self.fraction, random_state=self.seed,
                                            stratify=labels)
        except ValueError as error:
            counts = "" if labels is None else ", label counts " + ", ".join(
                f"{value:g}: {count}" for value, count in zip(*np.unique(labels, return_counts=True)))
            raise ValueError(
                f"Early stopping holds out validation_fraction={self.fraction} of the "
                f"{len(rows)} rows{' stratified by label' if labels is not None else ''}"
                f"{counts}; that is too few rows to split ({error}). Pass more rows, raise "
                "validation_fraction, or set early_stopping=False."
            ) from error
        return dataset.subset(np.sort(train)), dataset.subset(np.sort(valid))


class FixedSplit:
    """skorch ``train_split`` returning precomputed row sets (e.g. a per-user holdout)."""

    def __init__(self, train_index: np.ndarray, valid_index: np.ndarray):
        self.train_index = train_index
        self.valid_index = valid_index

    def __call__(self, dataset: InteractionDataset, y=None, **fit_params):
        return dataset.subset(self.train_index), dataset.subset(self.valid_index)


class TwoTowerNet(NeuralNet):
    """``NeuralNet`` whose criterion sees the module outputs, the target, the batch and the module.

    The module returns ``(logits, user_embeddings, item_embeddings)``; the criterion (an
    ``nn.Module`` from the estimator) decides how to turn them into a loss, so pointwise,
    pairwise and in-batch losses share one net.

    ``mixed_precision`` ("bf16" or "fp16") runs the forward pass and the loss under
    ``torch.autocast``; "fp16" also scales the loss with a ``GradScaler`` (CUDA only), so small
    gradients do not underflow.

    ``distributed`` (a process group exists and the training iterator yields this rank's share
    of each global batch): the training steps run the module through
    ``DistributedDataParallel``, whose constructor gives every rank rank 0's weights and whose
    backward pass averages the gradients over the ranks, so every rank takes the same optimizer
    step. ``module_`` stays the plain module: validation, callbacks and the estimator's
    embeddings use it on every rank with no collective call, and the fitted net pickles. The
    recorded training loss is the mean over ranks, so callbacks that watch it (a plateau
    schedule) decide the same on every rank.
    """

    def __init__(self, *args, mixed_precision=None, distributed=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixed_precision = mixed_precision
        self.distributed = distributed

    def initialize(self):
        super().initialize()
        enabled = self.mixed_precision == "fp16"
        self.grad_scaler_ = torch.amp.GradScaler("cuda", enabled=enabled) if enabled else None
        return self

    def _autocast(self):
        if self.mixed_precision is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def get_dataset(self, X, y=None):
        if isinstance(X, InteractionDataset):
            return X
        return InteractionDataset(X, y)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        wrapper = None
        if self.distributed:
            device = torch.device(self.device)
            wrapper = DistributedDataParallel(
                self.module_, device_ids=[device] if device.type == "cuda" else None)
        # Set past skorch's __setattr__, which would register the wrapper as a second module
        # and count the parameters it shares with module_ twice.
        object.__setattr__(self, "_data_parallel", wrapper)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        # The wrapper holds the process group; the fitted net keeps the plain module only.
        object.__setattr__(self, "_data_parallel", None)

    def infer(self, x, **fit_params):
        with self._autocast():
            wrapper = getattr(self, "_data_parallel", None)
            if wrapper is None or not self.module_.training:
                return super().infer(x, **fit_params)
            return wrapper(**self._merge_x_and_fit_params(to_tensor(x, device=self.device),
                                                          fit_params))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        with self._autocast():
            return self.criterion_(y_pred, y_true, X, self.module_)

    def train_step_single(self, batch, **fit_params):
        if self.grad_scaler_ is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.grad_scaler_.scale(loss).backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        if self.grad_scaler_ is None:
            return super().train_step(batch, **fit_params)
        # GradScaler.step takes no closure, so the step is taken here instead of via
        # optimizer.step(closure); skorch's hooks (on_grad_computed) still run.
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        self.notify("on_grad_computed", named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch, training=True)
        for name in self._optimizers:
            self.grad_scaler_.step(getattr(self, name + "_"))
        self.grad_scaler_.update()
        return step

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch, with the batch size read from the target: a batch also holds
        inputs that are not one per row (pooled bags, sampled candidates), which skorch's
        ``get_len`` of the whole batch would reject."""
        if iterator is None:
            return
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            loss = step["loss"]
            if training and self.distributed:
                loss = mean_over_ranks(loss)
            self.history.record_batch(prefix + "_loss", loss.item())
            self.history.record_batch(prefix + "_batch_size", len(batch[1]))
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)

    def forward_logits(self, X) -> np.ndarray:
        """Logits of every row of ``X`` (batched, evaluation mode)."""
        chunks = [out[0] for out in self.forward_iter(X, training=False)]
        return torch.cat(chunks).float().numpy() if chunks else np.zeros(0, dtype=np.float32)


class Compose:
    """Batch transforms applied in order (a picklable ``transform`` for :class:`BatchLoader`)."""

    def __init__(self, transforms):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, batch: dict) -> dict:
        for transform in self.transforms:
            batch = transform(batch)
        return batch


class DrawCandidates:
    """Batch transform: the negatives of each row and what the loss needs to use them.

    The fitted ``sampler`` draws ``n_negatives`` items per row (none for in-batch sampling);
    their item-tower inputs are gathered from the ``catalogue`` arrays into the batch's
    :data:`CANDIDATES` dict, so the module embeds them with the positives. With
    ``shared_columns`` (the sampled softmax) every row competes against all candidate columns
    (the batch's items, then every draw), and the batch gets the log sampling probability of
    each column (``log_q``) and, when the sampler excludes known positives, the mask of the
    columns that are known positives of each row; otherwise (pairwise losses) each row keeps
    its own draws and the mask covers the in-batch columns. ``user_log_q`` adds the log
    frequency of each row's user (the item-to-user half of the symmetric softmax). Only ids
    and probabilities go to the loss, computed here on the CPU.
    """

    def __init__(self, sampler, catalogue: dict, *, shared_columns: bool, log_q: bool = True,
                 user_log_q: bool = False):
        self.sampler = sampler
        self.catalogue = catalogue
        self.shared_columns = shared_columns
        self.log_q = log_q
        self.user_log_q = user_log_q
        self._log_q = {}

    def _cached_log_q(self, key, compute) -> np.ndarray:
        """``compute()`` (a log q array), cached under ``key``. Items or users absent from the
        training rows (only in validation rows) have log q = -inf; they get the rarest
        training entry's value so validation losses stay finite."""
        if key not in self._log_q:
            log_q = compute()
            finite = np.isfinite(log_q)
            self._log_q[key] = np.where(finite, log_q, log_q[finite].min()).astype(np.float32)
        return self._log_q[key]

    def __call__(self, batch: dict) -> dict:
        users = batch[USER_POSITION].numpy()
        items = batch[ITEM_POSITION].numpy()
        draws = self.sampler.sample(users, items)
        flat = draws.reshape(-1)
        out = dict(batch)
        if flat.size:
            out[CANDIDATES] = {key: torch.from_numpy(value[flat])
                               for key, value in self.catalogue.items()}
            out[CANDIDATE_POSITION] = torch.from_numpy(flat)
        columns = items
        if self.shared_columns:
            columns = np.concatenate([items, flat])
            if self.log_q:
                log_q = self._cached_log_q((len(items), flat.size), lambda: self.sampler.mixture_log_q(
                    len(items), flat.size))
                out[CANDIDATE_LOG_Q] = torch.from_numpy(log_q[columns])
        if self.sampler.exclude_known_positives and (self.shared_columns
                                                     or self.sampler.uses_batch_negatives):
            out[KNOWN_POSITIVE] = torch.from_numpy(self.sampler.known_positive_mask(users, columns))
        if self.user_log_q:
            user_log_q = self._cached_log_q("users", lambda: self.sampler.batch_user_log_q_)
            out[USER_LOG_Q] = torch.from_numpy(user_log_q[users])
        return out
