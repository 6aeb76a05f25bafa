"""Retrieval losses and the small logit transforms that feed them (PyTorch).

The pieces compose like the ``Retrieval`` task of TensorFlow Recommenders: the model
computes query-candidate scores and divides them by its temperature (the model owns
the scale), then a chain of pure functions edits the logits and a loss reduces them::

    logits = query @ candidates.T / temperature          # (B, C), the model's job
    logits = logq_correction(logits, log_q[candidate_positions])
    logits = remove_accidental_hits(logits, positive_ids, candidate_ids)
    logits = mask_logits(logits, known_positive_mask, positive_columns)
    loss = sampled_softmax_loss(logits, weight=sample_weight)

Nothing in this module knows about towers, samplers or indexes. Every loss returns a
scalar: the mean of per-row losses, or with ``weight`` (B,) the weighted mean
``sum(weight * row_loss) / sum(|weight|)`` (0 for a batch whose weights are all 0).

:func:`retrieval_softmax_loss` computes the same chain and the softmax, as the ``Retrieval``
task does, with the log q correction and both masks folded into one additive offset (one pass
over the (B, C) logits, none in the backward pass); the estimators call it and the pairwise
losses with the scores, log q and ids that the model and the batch loader computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bce_loss",
    "binary_cross_entropy",
    "bpr_loss",
    "infonce_loss",
    "logq_correction",
    "mask_logits",
    "remove_accidental_hits",
    "retrieval_softmax_loss",
    "sampled_softmax_loss",
    "split_logits",
]


def _masked_value(dtype: torch.dtype) -> float:
    # Finite, so bf16/fp16 logits stay finite (no inf - inf = nan in backward), and half
    # of the minimum so that adding a logQ offset or a few logits cannot overflow.
    return torch.finfo(dtype).min / 2


def _check_shape(tensor: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(tensor.shape)}.")


def _positive_columns_or_diagonal(
    logits: torch.Tensor, positive_columns: torch.Tensor | None
) -> torch.Tensor:
    n_rows, n_columns = logits.shape
    if positive_columns is None:
        if n_columns < n_rows:
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} have fewer columns than rows, so the "
                "positives cannot sit on the diagonal; pass positive_columns."
            )
        return torch.arange(n_rows, device=logits.device)
    _check_shape(positive_columns, (n_rows,), "positive_columns")
    return positive_columns.long()


def _weighted_mean(row_losses: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return row_losses.mean()
    _check_shape(weight, tuple(row_losses.shape), "weight")
    weight = weight.to(row_losses.dtype)
    # A batch whose weights are all zero contributes nothing (not 0 / 0); the absolute sum
    # keeps mixed-sign weights from dividing by a near-zero total.
    total = weight.abs().sum().clamp(min=torch.finfo(row_losses.dtype).tiny)
    return (weight * row_losses).sum() / total


def logq_correction(logits: torch.Tensor, candidate_log_q) -> torch.Tensor:
    """Subtract the log sampling probability of each candidate from its logit.

    Sampled softmax over negatives drawn with probability ``q`` estimates the full
    softmax only once every logit is corrected: ``corrected = logit - log q``
    (Bengio & Senecal 2008; Yi et al. 2019). Popular candidates, which appear as
    negatives more often, are pushed down less. TensorFlow Recommenders once added
    ``log q`` instead (tensorflow/recommenders#219); this is the fixed sign.

    Parameters
    ----------
    logits : Tensor of shape (B, C)
        Scaled scores of B queries against C candidates.
    candidate_log_q : Tensor or array-like broadcastable to (B, C)
        ``log q`` of each candidate: shape (C,) for shared candidate columns, or (B, C)
        for per-row sampled negatives. Converted to the dtype and device of ``logits``.
        Every entry must be finite (q > 0) for candidates that occur.

    Returns
    -------
    Tensor of shape (B, C)
        ``logits - candidate_log_q``.

    Examples
    --------
    >>> import math, torch
    >>> logq_correction(torch.zeros(1, 2), torch.tensor([math.log(0.5), math.log(0.25)]))
    tensor([[0.6931, 1.3863]])
    """
    log_q = torch.as_tensor(candidate_log_q, dtype=logits.dtype, device=logits.device)
    try:
        broadcastable = torch.broadcast_shapes(log_q.shape, logits.shape) == logits.shape
    except RuntimeError:
        broadcastable = False
    if not broadcastable:
        raise ValueError(
            f"candidate_log_q of shape {tuple(log_q.shape)} does not broadcast to logits of "
            f"shape {tuple(logits.shape)}; pass one log q per candidate column, shape "
            f"({logits.shape[-1]},) or {tuple(logits.shape)}."
        )
    return logits - log_q


def mask_logits(
    logits: torch.Tensor, mask: torch.Tensor, positive_columns: torch.Tensor | None = None
) -> torch.Tensor:
    """Remove the masked candidates from the softmax by setting their logits very low.

    Masked entries are set to ``torch.finfo(logits.dtype).min / 2``: a finite value, so
    bf16 and fp16 logits stay finite, whose softmax weight and gradient are exactly 0.

    Parameters
    ----------
    logits : Tensor of shape (B, C)
    mask : bool Tensor of shape (B, C)
        True marks a candidate that must not act as a negative for that row, e.g. the
        known positives of each user among the candidates.
    positive_columns : Tensor of shape (B,), optional
        Column of each row's positive; these entries are never masked, so a mask of
        known positives (which contains the row's own positive) can be passed as is.
        None leaves every masked entry masked.

    Returns
    -------
    Tensor of shape (B, C)
        A masked copy; ``logits`` is unchanged.

    Examples
    --------
    >>> import torch
    >>> mask = torch.tensor([[True, True, False]])
    >>> out = mask_logits(torch.ones(1, 3), mask, positive_columns=torch.tensor([0]))
    >>> out[0, 0].item(), out[0, 1].item() < -1e30, out[0, 2].item()
    (1.0, True, 1.0)
    """
    _check_shape(mask, tuple(logits.shape), "mask")
    if positive_columns is not None:
        _check_shape(positive_columns, (logits.shape[0],), "positive_columns")
        # Unmask each row's positive in a copy (cheaper than a (B, C) one-hot).
        mask = mask.clone()
        mask[torch.arange(len(mask), device=mask.device), positive_columns.long()] = False
    # One pass over (B, C) (masked_fill copies, then fills); a Python scalar keeps the logits'
    # dtype and needs no tensor (on CUDA, no host-to-device copy per call).
    return torch.where(mask, _masked_value(logits.dtype), logits)


def remove_accidental_hits(
    logits: torch.Tensor,
    positive_ids: torch.Tensor,
    candidate_ids: torch.Tensor,
    positive_columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask candidates that are the row's own positive item in another column.

    With in-batch negatives the same item can be the positive of several rows; for row
    i, column j is an accidental hit when ``candidate_ids[j] == positive_ids[i]`` and
    ``j != positive_columns[i]``. Such a column is not a negative and is masked with
    :func:`mask_logits`.

    Parameters
    ----------
    logits : Tensor of shape (B, C)
    positive_ids : Tensor of shape (B,)
        Item id (or position) of each row's positive.
    candidate_ids : Tensor of shape (C,)
        Item id (or position) of each candidate column, in the same id space.
    positive_columns : Tensor of shape (B,), optional
        Column of each row's positive; default ``arange(B)`` (the diagonal).

    Returns
    -------
    Tensor of shape (B, C)

    Examples
    --------
    >>> import torch
    >>> ids = torch.tensor([7, 7, 3])
    >>> out = remove_accidental_hits(torch.zeros(3, 3), ids, ids)
    >>> (out < -1e30).int()
    tensor([[0, 1, 0],
            [1, 0, 0],
            [0, 0, 0]], dtype=torch.int32)
    """
    _check_shape(positive_ids, (logits.shape[0],), "positive_ids")
    _check_shape(candidate_ids, (logits.shape[1],), "candidate_ids")
    positive_columns = _positive_columns_or_diagonal(logits, positive_columns)
    same_item = positive_ids[:, None] == candidate_ids[None, :]
    return mask_logits(logits, same_item, positive_columns)


def split_logits(
    logits: torch.Tensor,
    positive_columns: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn a (B, C) logit matrix into the inputs of the pairwise and pointwise losses.

    Lets :func:`bpr_loss`, :func:`bce_loss` and :func:`infonce_loss` run on in-batch
    logits: every column except the positive's is a negative unless ``mask`` says so.

    Parameters
    ----------
    logits : Tensor of shape (B, C)
    positive_columns : Tensor of shape (B,), optional
        Default ``arange(B)`` (the diagonal).
    mask : bool Tensor of shape (B, C), optional
        True marks further candidates that are not negatives (accidental hits, known
        positives).

    Returns
    -------
    positive_logits : Tensor of shape (B,)
    negative_logits : Tensor of shape (B, C)
        ``logits`` itself; the positive's column is excluded by ``negative_mask``.
    negative_mask : bool Tensor of shape (B, C)
        True for the positive's column and for masked entries.

    Examples
    --------
    >>> import torch
    >>> positive, negative, negative_mask = split_logits(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> positive
    tensor([1., 4.])
    >>> negative_mask
    tensor([[ True, False],
            [False,  True]])
    """
    positive_columns = _positive_columns_or_diagonal(logits, positive_columns)
    negative_mask = F.one_hot(positive_columns, logits.shape[1]).bool()
    if mask is not None:
        _check_shape(mask, tuple(logits.shape), "mask")
        negative_mask = negative_mask | mask
    positive_logits = logits.gather(1, positive_columns[:, None]).squeeze(1)
    return positive_logits, logits, negative_mask


def _check_pairs(
    positive_logits: torch.Tensor, negative_logits: torch.Tensor, negative_mask: torch.Tensor | None
) -> torch.Tensor:
    """Validate (B,), (B, N) and the mask; return the bool mask of valid negatives."""
    if positive_logits.ndim != 1:
        raise ValueError(
            f"positive_logits must have shape (B,); got {tuple(positive_logits.shape)}."
        )
    _check_shape(
        negative_logits, (positive_logits.shape[0], negative_logits.shape[-1]), "negative_logits"
    )
    if negative_mask is None:
        return torch.ones_like(negative_logits, dtype=torch.bool)
    _check_shape(negative_mask, tuple(negative_logits.shape), "negative_mask")
    return ~negative_mask


def sampled_softmax_loss(
    logits: torch.Tensor,
    positive_columns: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each row's positive against all its candidate columns.

    ``row_loss_i = -log(exp(l[i, p_i]) / sum_j exp(l[i, j]))`` with ``p_i =
    positive_columns[i]``. With in-batch negatives C = B and the positives sit on the
    diagonal; extra shared negatives are appended after the B batch columns. Apply
    :func:`logq_correction` and :func:`remove_accidental_hits` first.

    Parameters
    ----------
    logits : Tensor of shape (B, C)
        Scaled scores (already divided by the temperature).
    positive_columns : Tensor of shape (B,), optional
        Column of each row's positive; default ``arange(B)``.
    weight : Tensor of shape (B,), optional
        Row weights; the result is ``sum(weight * row_loss) / sum(weight)``.

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> loss = sampled_softmax_loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    >>> round(loss.item(), 4) == round(-math.log(math.exp(2) / (math.exp(2) + 1)), 4)
    True
    """
    positive_columns = _positive_columns_or_diagonal(logits, positive_columns)
    row_losses = F.cross_entropy(logits, positive_columns, reduction="none")
    return _weighted_mean(row_losses, weight)


def retrieval_softmax_loss(
    logits: torch.Tensor,
    positive_ids: torch.Tensor,
    candidate_ids: torch.Tensor,
    *,
    log_q: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax of queries against candidate columns, positives on the diagonal.

    The whole chain of the module docstring: subtract ``log_q`` of each column (when given),
    mask accidental hits (the row's positive id in another column) and ``known_mask``
    entries (keeping each row's own positive), then :func:`sampled_softmax_loss`.

    Parameters
    ----------
    logits : Tensor of shape (B, C), C >= B
        Scaled scores; column i < B holds row i's positive.
    positive_ids : Tensor of shape (B,)
    candidate_ids : Tensor of shape (C,)
        Ids (or positions) of the positives and of every column, in one id space.
    log_q : Tensor of shape (C,), optional
        Log sampling probability of each column.
    known_mask : bool Tensor of shape (B, C), optional
        True where a column is a known positive of the row (not a negative).
    weight : Tensor of shape (B,), optional

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> logits = torch.tensor([[2.0, 5.0, 0.0]])  # column 1 holds the positive's item again
    >>> loss = retrieval_softmax_loss(logits, torch.tensor([7]), torch.tensor([7, 7, 3]))
    >>> round(loss.item(), 4) == round(math.log(1 + math.exp(-2.0)), 4)
    True
    """
    diagonal = _positive_columns_or_diagonal(logits, None)  # row i's positive is column i
    _check_shape(positive_ids, (logits.shape[0],), "positive_ids")
    _check_shape(candidate_ids, (logits.shape[1],), "candidate_ids")
    if known_mask is not None:
        _check_shape(known_mask, tuple(logits.shape), "known_mask")
    if log_q is not None:
        log_q = torch.as_tensor(log_q, dtype=logits.dtype, device=logits.device)
        _check_shape(log_q, (logits.shape[1],), "log_q")
    # A transposed view (the item-to-user half of the symmetric softmax reads the user-to-item
    # scores that way) is worked on in its own layout, the softmax running down its columns:
    # elementwise passes over a transposed (B, C) block are several times slower.
    transposed = logits.stride(0) == 1 and logits.stride(1) != 1
    if transposed:
        logits = logits.T
        positive_ids, candidate_ids = candidate_ids, positive_ids
        known_mask = None if known_mask is None else known_mask.T
    # One mask for both kinds of non-negatives (as remove_accidental_hits then mask_logits
    # would apply them), each row's own positive kept.
    mask = positive_ids[:, None] == candidate_ids[None, :]
    if known_mask is not None:
        mask |= known_mask
    mask[diagonal, diagonal] = False
    # The logQ correction and the mask as one additive offset, built without autograd and added
    # in one pass: the same logits as logq_correction then mask_logits (a masked entry is
    # _masked_value plus a logit, which rounds to _masked_value), but no masked select, which
    # mispredicts on masks as dense as known positives (a fifth of the batch on MovieLens),
    # and nothing to do in the backward pass.
    offset = mask.to(logits.dtype)
    if log_q is None:
        offset.mul_(_masked_value(logits.dtype))
    else:
        log_q = log_q[:, None] if transposed else log_q
        offset = torch.add(-log_q, offset, alpha=_masked_value(logits.dtype))
    logits = torch.add(offset, logits)
    if not transposed:
        return sampled_softmax_loss(logits, diagonal, weight)
    return _weighted_mean(-torch.log_softmax(logits, dim=0).diagonal(), weight)


def infonce_loss(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    negative_mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE: softmax cross-entropy of each positive against its own N negatives.

    ``row_loss_i = -log(exp(s_i) / (exp(s_i) + sum_{j valid} exp(n_ij)))``. Use it when
    each positive gets ``n_negatives`` sampled negatives (shape (B, N)) rather than
    shared candidate columns. A row whose negatives are all masked has loss 0.

    Parameters
    ----------
    positive_logits : Tensor of shape (B,)
    negative_logits : Tensor of shape (B, N)
    negative_mask : bool Tensor of shape (B, N), optional
        True marks an invalid negative (e.g. padding or a known positive).
    weight : Tensor of shape (B,), optional
        Row weights (weighted mean).

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> loss = infonce_loss(torch.tensor([1.0]), torch.tensor([[0.0, 0.0]]))
    >>> round(loss.item(), 4) == round(-math.log(math.e / (math.e + 2)), 4)
    True
    """
    valid = _check_pairs(positive_logits, negative_logits, negative_mask)
    negative_logits = mask_logits(negative_logits, ~valid)
    logits = torch.cat([positive_logits[:, None], negative_logits], dim=1)
    positive_columns = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return sampled_softmax_loss(logits, positive_columns, weight)


def bpr_loss(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    negative_mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bayesian personalised ranking: the positive should outscore each negative.

    ``row_loss_i = mean_{j valid} -log sigmoid(s_i - n_ij)`` (Rendle et al. 2009),
    averaged over the row's valid negatives; a row with no valid negative has loss 0.
    Rows are then combined by the (weighted) mean.

    Parameters
    ----------
    positive_logits : Tensor of shape (B,)
    negative_logits : Tensor of shape (B, N)
    negative_mask : bool Tensor of shape (B, N), optional
        True marks an invalid negative.
    weight : Tensor of shape (B,), optional
        Row weights (weighted mean).

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> loss = bpr_loss(torch.tensor([1.0]), torch.tensor([[0.0, 1.0]]))
    >>> round(loss.item(), 4) == round((math.log(1 + math.exp(-1)) + math.log(2)) / 2, 4)
    True
    """
    valid = _check_pairs(positive_logits, negative_logits, negative_mask)
    pair_losses = -F.logsigmoid(positive_logits[:, None] - negative_logits)
    pair_losses = pair_losses.masked_fill(~valid, 0.0)
    n_valid = valid.sum(dim=1).clamp(min=1)
    return _weighted_mean(pair_losses.sum(dim=1) / n_valid, weight)


def binary_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Pointwise binary cross-entropy on explicit labelled pairs.

    ``loss_i = -(y_i log sigmoid(l_i) + (1 - y_i) log(1 - sigmoid(l_i)))``, computed
    stably by ``F.binary_cross_entropy_with_logits``, then the (weighted) mean.

    Parameters
    ----------
    logits : Tensor of shape (B,)
    labels : Tensor of shape (B,)
        Targets in [0, 1] (1 = interaction, 0 = none; soft labels allowed).
    weight : Tensor of shape (B,), optional
        Example weights (weighted mean).

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> loss = binary_cross_entropy(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
    >>> round(loss.item(), 4) == round((math.log(2) + math.log(1 + math.exp(2))) / 2, 4)
    True
    """
    _check_shape(labels, tuple(logits.shape), "labels")
    row_losses = F.binary_cross_entropy_with_logits(
        logits, labels.to(logits.dtype), reduction="none"
    )
    return _weighted_mean(row_losses, weight)


def bce_loss(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    negative_weight: float = 1.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pointwise BCE with positives labelled 1 and their sampled negatives labelled 0.

    The (B, 1 + N) logits are flattened into labelled pairs and passed to
    :func:`binary_cross_entropy`: a positive has weight ``weight_i`` and each valid
    negative ``weight_i * negative_weight``, so the loss is the weighted mean over all
    valid pairs::

        sum_i w_i (softplus(-s_i) + nw * sum_{j valid} softplus(n_ij))
        / sum_i w_i (1 + nw * n_valid_i)

    Parameters
    ----------
    positive_logits : Tensor of shape (B,)
    negative_logits : Tensor of shape (B, N), optional
        None trains on positives only.
    negative_mask : bool Tensor of shape (B, N), optional
        True marks an invalid negative (weight 0).
    weight : Tensor of shape (B,), optional
        Row weights, shared by a positive and its negatives.
    negative_weight : float, default=1.0
        Weight of one negative relative to its positive; ``1 / N`` balances the classes.
    labels : Tensor of shape (B,), optional
        Labels of the own pairs (default 1): a row labelled 0 is an explicit negative,
        whose sampled negatives are ignored.

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> loss = bce_loss(torch.tensor([0.0]), torch.tensor([[1.0]]))
    >>> round(loss.item(), 4) == round((math.log(2) + math.log(1 + math.e)) / 2, 4)
    True
    """
    if negative_logits is None:
        negative_logits = positive_logits.new_zeros((len(positive_logits), 0))
    valid = _check_pairs(positive_logits, negative_logits, negative_mask)
    row_weight = (
        torch.ones_like(positive_logits) if weight is None else weight.to(positive_logits.dtype)
    )
    _check_shape(row_weight, tuple(positive_logits.shape), "weight")
    if labels is None:
        labels = torch.ones_like(positive_logits)
    _check_shape(labels, tuple(positive_logits.shape), "labels")
    valid = valid & (labels > 0.5)[:, None]
    logits = torch.cat([positive_logits[:, None], negative_logits], dim=1)
    pair_labels = torch.zeros_like(logits)
    pair_labels[:, 0] = labels.to(logits.dtype)
    pair_weight = torch.cat(
        [row_weight[:, None], row_weight[:, None] * negative_weight * valid.to(logits.dtype)],
        dim=1,
    )
    return binary_cross_entropy(logits.flatten(), pair_labels.flatten(), pair_weight.flatten())
