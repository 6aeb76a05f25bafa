"""PyTorch building blocks of the towers: MLP, masked pooling, sequence encoder, tower, two-tower module.

The towers know nothing of losses, samplers or indexes: they turn a dict of encoded feature tensors
(see :mod:`skdssm._features`) into one embedding per row.
"""

from __future__ import annotations

import contextlib
import math
import threading
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ._features import CANDIDATES, OFFSETS, OOV, PAD, POOLING_TRANSPOSE, PROFILE, TowerSchema

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}

INITIALIZERS = {
    "default": None,
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "kaiming_normal": partial(nn.init.kaiming_normal_, nonlinearity="relu"),
    "kaiming_uniform": partial(nn.init.kaiming_uniform_, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
}


_thread_rng = threading.local()


@contextlib.contextmanager
def training_generator(generator: torch.Generator | None):
    """Draw the towers' random masks (dropout, id dropout) from ``generator`` in this thread.

    torch's default generator is one per process: fits running in threads would share it, and
    the order in which they draw from it (hence the trained models) would depend on scheduling.
    Each fit therefore draws from its own seeded ``torch.Generator``, set here for the thread
    that trains; outside this context the towers draw from torch's default generator.
    """
    previous = getattr(_thread_rng, "generator", None)
    _thread_rng.generator = generator
    try:
        yield
    finally:
        _thread_rng.generator = previous


def _rand(shape, device, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws from this thread's training generator (torch's default without one)."""
    return torch.rand(shape, dtype=dtype, device=device,
                      generator=getattr(_thread_rng, "generator", None))


def _replay_contexts():
    """``context_fn`` of ``torch.utils.checkpoint``: the recomputation in the backward pass
    draws the same masks as the forward pass did (checkpoint replays torch's default generator
    only, not a training generator)."""
    generator = getattr(_thread_rng, "generator", None)
    if generator is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    state = generator.get_state()

    @contextlib.contextmanager
    def recompute():
        current = generator.get_state()
        generator.set_state(state)
        try:
            with training_generator(generator):
                yield
        finally:
            generator.set_state(current)

    return contextlib.nullcontext(), recompute()


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask thresholds ``torch.rand`` from the fit's own generator.

    Same distribution and scaling. The mask comes from the generator of
    :func:`training_generator`, so fits in threads do not share torch's default generator; on
    the CPU the threshold is also faster: torch's CPU ``bernoulli_`` took twice as long as
    ``rand`` plus a comparison and was 15% of a training epoch (benchmarks/RESULTS.md). Other
    devices outside a training generator keep torch's fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or (
                x.device.type != "cpu" and getattr(_thread_rng, "generator", None) is None):
            return super().forward(x)
        # In place on the draws: 1 / (1 - p) where kept, 0 where dropped; one product with x.
        scale = _rand(x.shape, x.device, x.dtype if x.is_floating_point() else torch.float32)
        return x * scale.ge_(self.p).mul_(1.0 / (1.0 - self.p))


# Activations that can overwrite their input: in an MLP that input is a Linear's or a
# BatchNorm's output, which their backward passes do not read, so the values and gradients are
# those of the out-of-place module with one (B, width) tensor fewer per layer. Fewer fresh
# allocations made a retriever training step 12% faster on the CPU (benchmarks/RESULTS.md
# section 7).
INPLACE_ACTIVATIONS = {"relu", "elu", "leaky_relu", "silu"}


def _activation(name: str) -> nn.Module:
    return ACTIVATIONS[name](inplace=True) if name in INPLACE_ACTIVATIONS else ACTIVATIONS[name]()


def make_mlp(in_dim: int, dims, *, activation="relu", batch_norm=False, dropout=0.0,
             dropout_position="after", activate_output=False, init="default") -> nn.Sequential:
    """Stack ``Linear`` layers of widths ``dims``; the last one is linear unless ``activate_output``.

    Each hidden layer is ``[Dropout] Linear [BatchNorm] activation [Dropout]``: dropout sits before
    the Linear (``dropout_position="before"``) or after the activation (``"after"``). The output
    layer gets no BatchNorm, activation or dropout by default, because an activation right before
    L2 normalisation (ReLU makes every embedding non-negative) cripples cosine scores.
    """
    layers = []
    for i, width in enumerate(dims):
        is_output = i == len(dims) - 1
        if dropout and dropout_position == "before":
            layers.append(Dropout(dropout))
        linear = nn.Linear(in_dim, width)
        if INITIALIZERS[init] is not None:
            INITIALIZERS[init](linear.weight)
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not is_output or activate_output:
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_activation(activation))
            if dropout and dropout_position == "after" and not is_output:
                layers.append(Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


def pooled_mean(embedding: nn.Embedding, codes: torch.Tensor,
                offsets: torch.Tensor | None = None, transpose=None) -> torch.Tensor:
    """Mean embedding of each row's codes, padding (code 0) left out; zeros for an empty row.

    ``codes`` is a (B, L) padded block, or flat codes with ``offsets`` (B,) marking where each
    row starts (a ragged bag). ``embedding_bag`` pools without a (B, L, dim) tensor.
    ``transpose`` (with ``offsets``): the transposed pooling matrix of the bags, the three
    arrays of :func:`skdssm._history.bag_pooling_transpose`; the backward pass then pools the
    gradient with it (:class:`_BagMean`).
    """
    if _is_exporting():
        return _pooled_mean_in_onnx_ops(embedding.weight, codes, offsets)
    if transpose is not None and offsets is not None and torch.is_grad_enabled():
        return _BagMean.apply(embedding.weight, codes, offsets, *transpose)
    return F.embedding_bag(codes, embedding.weight, offsets, mode="mean", padding_idx=PAD)


class _BagMean(torch.autograd.Function):
    """Mean-pooled bags whose weight gradient is pooled by embedding row.

    Forward: ``embedding_bag(codes, weight, offsets, mode="mean")``, the mean over each bag's
    codes, which is ``P @ weight`` for the bags' pooling matrix ``P``. Backward: ``P.T @ grad``
    as one more ``embedding_bag``, over the batch rows that pool each code (the transpose of
    ``P``, built by the batch loader). Same values as ``embedding_bag``'s own backward, which
    sorts the codes first: on the CPU that sort and the scatter after it were a fifth of a
    retriever training step, ten times what this backward costs (benchmarks/RESULTS.md
    section 7).
    """

    @staticmethod
    def forward(ctx, weight, codes, offsets, rows, code_offsets, row_weights):
        if len(code_offsets) != weight.shape[0]:
            raise ValueError(f"The pooling transpose covers {len(code_offsets)} codes, but the "
                             f"embedding has {weight.shape[0]} rows.")
        ctx.save_for_backward(rows, code_offsets, row_weights)
        return F.embedding_bag(codes, weight, offsets, mode="mean", padding_idx=PAD)

    @staticmethod
    def backward(ctx, grad):
        rows, code_offsets, row_weights = ctx.saved_tensors
        weight_grad = F.embedding_bag(rows, grad, code_offsets, mode="sum",
                                      per_sample_weights=row_weights.to(grad.dtype))
        return weight_grad, None, None, None, None, None


def _is_exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())


def _pooled_mean_in_onnx_ops(weight: torch.Tensor, codes: torch.Tensor,
                             offsets: torch.Tensor | None) -> torch.Tensor:
    """:func:`pooled_mean` as a gather and a scatter-add, for ``torch.export`` (ONNX export).

    ONNX has no EmbeddingBag: the exporter lowers ``embedding_bag`` to a loop over the rows,
    which onnxruntime ran 60 to 190 times slower than PyTorch on MovieLens history bags
    (benchmarks/RESULTS.md section 8). The same mean from ops ONNX has runs at least as fast
    as PyTorch there.
    """
    valid = (codes != PAD).to(weight.dtype)
    vectors = F.embedding(codes, weight) * valid.unsqueeze(-1)
    if offsets is None:
        return vectors.sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)
    n_codes, n_rows = codes.shape[0], offsets.shape[0]
    # Row of each code: the number of rows starting at or before it, minus one (an empty bag
    # repeats the next offset, so it owns no code).
    starts = torch.zeros(n_codes + 1, dtype=offsets.dtype, device=codes.device)
    starts = starts.index_add(0, offsets, torch.ones_like(offsets))
    rows = torch.cumsum(starts, 0)[:n_codes] - 1
    sums = vectors.new_zeros((n_rows, weight.shape[1])).index_add(0, rows, vectors)
    counts = valid.new_zeros(n_rows).index_add(0, rows, valid)
    return sums / counts.clamp(min=1.0).unsqueeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, L, d) over positions where ``mask`` (B, L) is True; zeros if none."""
    mask = mask.unsqueeze(-1).to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SequenceEncoder(nn.Module):
    """Behaviour sequence -> vector: item + position embeddings, self-attention blocks, mean pooling.

    Each block is multi-head self-attention with a residual connection and LayerNorm;
    padding (code 0) is masked in attention and in the pooling.
    """

    def __init__(self, cardinality: int, max_len: int, dim: int, n_heads: int = 2,
                 n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.items = nn.Embedding(cardinality, dim, padding_idx=PAD)
        self.positions = nn.Embedding(max_len, dim)
        self.attention = nn.ModuleList(
            nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
            for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(n_layers))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        valid = codes != PAD
        # A row with no item would make attention softmax over nothing (NaN); let it attend to
        # its first (padding) slot instead. Its pooled output is still zero.
        key_padding = ~valid
        key_padding[:, 0] &= valid.any(1)
        positions = torch.arange(codes.shape[1], device=codes.device)
        hidden = self.items(codes) + self.positions(positions)
        for attention, norm in zip(self.attention, self.norms):
            if self.training and attention.dropout > 0:
                attended = _attention_with_dropout(attention, hidden, key_padding)
            else:
                attended, _ = attention(hidden, hidden, hidden, key_padding_mask=key_padding,
                                        need_weights=False)
            hidden = norm(hidden + attended)
        return masked_mean(hidden, valid)


def _attention_with_dropout(attention: nn.MultiheadAttention, hidden: torch.Tensor,
                            key_padding: torch.Tensor) -> torch.Tensor:
    """``attention``'s self-attention in training, with its dropout on the attention weights
    drawn by :class:`Dropout` (torch's kernel draws from the default generator, shared by every
    thread). Same parameters and computation as ``nn.MultiheadAttention``."""
    batch, length, dim = hidden.shape
    heads = attention.num_heads
    q, k, v = (part.view(batch, length, heads, dim // heads).transpose(1, 2) for part in
               F.linear(hidden, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(dim // heads)
    scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
    weights = Dropout(attention.dropout).train()(torch.softmax(scores, dim=-1))
    return attention.out_proj((weights @ v).transpose(1, 2).reshape(batch, length, dim))


class Tower(nn.Module):
    """One tower: embeddings of every input, concatenated and LayerNorm-ed, then an MLP.

    Parameters
    ----------
    schema : TowerSchema
        Inputs of this side (from the fitted feature encoder).
    side : {"user", "item"}
        Prefix of this tower's keys in the batch dict (``"user:gender"``, ``"user:dense"``).
    embedding_dim : int
        Width of every embedding and of the dense branch.
    hidden_dims : sequence of int
        MLP widths; the last one is the output embedding size.
    normalize : bool
        L2-normalise the output, so a dot product is a cosine.
    gradient_checkpointing : bool
        Recompute the MLP and attention activations in the backward pass instead of storing them
        (``torch.utils.checkpoint``): less memory, more compute.
    id_dropout : float
        In training, replace each id by the out-of-vocabulary code with this probability, so the
        tower learns to serve ids it has never seen (cold start) from the other features.

    The out-of-vocabulary rows of every embedding start at zero: an unseen value contributes
    nothing until id dropout (if any) trains that row.
    """

    def __init__(self, schema: TowerSchema, side: str, *, embedding_dim=32, hidden_dims=(64,),
                 activation="relu", batch_norm=False, dropout=0.0, dropout_position="after",
                 activate_output=False, init="default", n_heads=2, n_attention_layers=1,
                 normalize=True, gradient_checkpointing=False, id_dropout=0.0):
        super().__init__()
        self.side = side
        self.normalize = normalize
        self.gradient_checkpointing = gradient_checkpointing
        self.id_dropout = id_dropout
        self.id_names = set(schema.ids)
        # ModuleDict keys cannot hold arbitrary column names, so modules are kept in lists.
        self.categorical_names = list(schema.categorical)
        self.categorical = nn.ModuleList(
            nn.Embedding(card, embedding_dim, padding_idx=PAD) for card in schema.categorical.values()
        )
        self.multi_names = list(schema.multi)
        self.multi = nn.ModuleList(
            nn.Embedding(card, embedding_dim, padding_idx=PAD) for card in schema.multi.values()
        )
        self.sequence_names = list(schema.sequence)
        self.sequences = nn.ModuleList(
            SequenceEncoder(card, max_len, embedding_dim, n_heads, n_attention_layers, dropout)
            for card, max_len in schema.sequence.values()
        )
        with torch.no_grad():
            for embedding in [*self.categorical, *self.multi]:
                embedding.weight[OOV].zero_()
        self.dense_keys = [self._key(k) for k, n in (("dense", schema.n_dense),
                                                      (PROFILE, schema.n_profile)) if n]
        n_dense = schema.n_dense + schema.n_profile
        self.dense = (nn.Sequential(nn.Linear(n_dense, embedding_dim), nn.ReLU())
                      if n_dense else None)
        n_parts = len(self.categorical) + len(self.multi) + len(self.sequences) + bool(self.dense)
        if n_parts == 0:
            raise ValueError(f"The {side} tower has no input features.")
        in_dim = n_parts * embedding_dim
        self.input_norm = nn.LayerNorm(in_dim)
        self.mlp = make_mlp(in_dim, hidden_dims, activation=activation, batch_norm=batch_norm,
                            dropout=dropout, dropout_position=dropout_position,
                            activate_output=activate_output, init=init)
        self.output_dim = hidden_dims[-1]

    def _key(self, name: str) -> str:
        return f"{self.side}:{name}"

    def _run(self, module: nn.Module, *args):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False, context_fn=_replay_contexts)
        return module(*args)

    def _drop_ids(self, name: str, codes: torch.Tensor) -> torch.Tensor:
        if self.training and self.id_dropout and name in self.id_names:
            drop = _rand(codes.shape, codes.device) < self.id_dropout
            return codes.masked_fill(drop, OOV)
        return codes

    def forward(self, inputs: dict) -> torch.Tensor:
        parts = [emb(self._drop_ids(n, inputs[self._key(n)]))
                 for n, emb in zip(self.categorical_names, self.categorical)]
        for name, emb in zip(self.multi_names, self.multi):
            key = self._key(name)
            transpose = (None if key + POOLING_TRANSPOSE[0] not in inputs
                         else [inputs[key + suffix] for suffix in POOLING_TRANSPOSE])
            parts.append(pooled_mean(emb, inputs[key], inputs.get(key + OFFSETS), transpose))
        for name, encoder in zip(self.sequence_names, self.sequences):
            parts.append(self._run(encoder, inputs[self._key(name)]))
        if self.dense is not None:
            parts.append(self.dense(torch.cat([inputs[key] for key in self.dense_keys], dim=-1)))
        hidden = self._run(self.mlp, self.input_norm(torch.cat(parts, dim=-1)))
        return F.normalize(hidden, dim=-1) if self.normalize else hidden


class TowerEnsemble(nn.Module):
    """Independently initialised towers side by side (one ensemble member each).

    The output is the members' outputs concatenated and divided by ``sqrt(n)``: the dot product
    of two ensemble embeddings is the mean of the members' dot products, and L2-normalised
    members give a unit vector, so cosine serving and the index need nothing new.
    """

    def __init__(self, towers):
        super().__init__()
        self.members = nn.ModuleList(towers)
        self.output_dim = sum(tower.output_dim for tower in towers)

    def forward(self, inputs: dict) -> torch.Tensor:
        outputs = [tower(inputs) for tower in self.members]
        return torch.cat(outputs, dim=-1) / math.sqrt(len(outputs))


class TwoTowerModule(nn.Module):
    """User tower and item tower; the score of a pair is ``<u, v> / temperature + bias``.

    With ``normalize=True`` the dot product is a cosine in [-1, 1]; dividing by a small
    ``temperature`` widens it so that a sigmoid (BCE) or softmax can reach confident
    probabilities. The temperature is a fixed hyper-parameter (searchable in GridSearchCV) rather
    than a learned scale, so that runs stay comparable and the cosine geometry that the hnswlib
    index relies on is untouched. ``bias`` is a learned global offset (the base rate for BCE); it
    does not change any ranking. ``id_biases`` (a mapping from id input keys such as
    ``"user:user_id"`` to their cardinality) adds a learned offset per id to a pair's logit, as in
    matrix factorisation with biases: the pair logit of ``forward`` includes them, the embeddings
    and :meth:`score_matrix` do not.

    With ``ensemble_size`` n > 1 each tower is a :class:`TowerEnsemble` of n independently
    initialised towers: a pair's logit is the mean of the n members' logits, and a criterion
    trains each member on its own loss by splitting embeddings with :meth:`members`.

    ``forward`` returns ``(logits, user_embeddings, item_embeddings, candidate_embeddings)``
    for the rows of a batch; the last is the item tower over the batch's sampled candidates
    (its ``"candidates"`` inputs, put there by the batch loader), empty when it has none.
    """

    def __init__(self, user_schema: TowerSchema, item_schema: TowerSchema, *, hidden_dims=(64,),
                 item_hidden_dims=None, temperature=0.1, ensemble_size=1, id_biases=None,
                 **tower_params):
        super().__init__()

        def tower(schema, side, dims):
            towers = [Tower(schema, side, hidden_dims=dims, **tower_params)
                      for _ in range(ensemble_size)]
            return towers[0] if ensemble_size == 1 else TowerEnsemble(towers)

        self.user_tower = tower(user_schema, "user", hidden_dims)
        self.item_tower = tower(item_schema, "item", item_hidden_dims or hidden_dims)
        self.ensemble_size = ensemble_size
        self.temperature = temperature
        self.bias = nn.Parameter(torch.zeros(()))
        # A learned logit offset per value of each named id input (zero at start).
        self.bias_keys = tuple(id_biases or {})
        self.id_biases = nn.ModuleList(
            nn.Embedding(cardinality, 1, _weight=torch.zeros(cardinality, 1))
            for cardinality in (id_biases or {}).values())

    def members(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """Split tower outputs (last axis) into the embeddings of each ensemble member, as the
        member's own tower computed them (one tensor when ``ensemble_size=1``)."""
        if self.ensemble_size == 1:
            return [embeddings]
        scale = math.sqrt(self.ensemble_size)
        return [chunk * scale for chunk in embeddings.chunk(self.ensemble_size, dim=-1)]

    def score(self, user_embeddings: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
        """Logits of aligned pairs, (B,): ``(u * v).sum(-1) / temperature + bias``."""
        return (user_embeddings * item_embeddings).sum(-1) / self.temperature + self.bias

    def score_matrix(self, user_embeddings: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Logits of users against candidates: shared candidates (C, d) give (B, C); per-row
        candidates (B, N, d) give (B, N). Same scale and bias as :meth:`score`."""
        # The temperature scales the (B, d) operand, not the (B, C) product.
        queries = user_embeddings / self.temperature
        if candidates.dim() == 2:
            return torch.addmm(self.bias, queries, candidates.T)
        return torch.einsum("bd,bnd->bn", queries, candidates) + self.bias

    def pair_offsets(self, batch: dict):
        """The id biases of each pair of a batch, (B,), summed (0 without ``id_biases``). They enter
        a pair's logit (``forward``'s first output), never :meth:`score_matrix`: rankings over
        candidates come from the embeddings alone."""
        offsets = 0
        for key, table in zip(self.bias_keys, self.id_biases):
            offsets = offsets + table(batch[key]).squeeze(-1)
        return offsets

    def forward(self, **batch):
        user = self.user_tower(batch)
        item = self.item_tower(batch)
        # No candidates: an empty tensor rather than None, which skorch could not move.
        candidates = (self.item_tower(batch[CANDIDATES]) if CANDIDATES in batch
                      else item.new_zeros((0, item.shape[-1])))
        return self.score(user, item) + self.pair_offsets(batch), user, item, candidates
