from __future__ import annotations

import math

import pytest
import torch

from skdssm.losses import (
    bce_loss,
    binary_cross_entropy,
    bpr_loss,
    infonce_loss,
    logq_correction,
    mask_logits,
    remove_accidental_hits,
    retrieval_softmax_loss,
    sampled_softmax_loss,
    split_logits,
)


def softmax_nll(positive: float, *others: float) -> float:
    """-log(e^positive / (e^positive + sum e^others)), written out by hand."""
    return -math.log(math.exp(positive) / (math.exp(positive) + sum(math.exp(o) for o in others)))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


LOGITS = torch.tensor([[2.0, 1.0, 0.5], [0.3, 1.5, -1.0], [0.0, 0.7, 1.2]])


# --- logit transforms --------------------------------------------------------------


def test_logq_correction_subtracts_log_q():
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    corrected = logq_correction(LOGITS, log_q)
    expected = LOGITS + torch.tensor([math.log(2), math.log(4), math.log(4)])
    torch.testing.assert_close(corrected, expected)


def test_logq_correction_accepts_per_row_log_q_and_numpy():
    log_q = LOGITS.numpy() * 0 - 1.0
    torch.testing.assert_close(logq_correction(LOGITS, log_q), LOGITS + 1.0)


def test_logq_correction_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"candidate_log_q of shape \(2,\).*\(3,\)"):
        logq_correction(LOGITS, torch.zeros(2))


def test_logq_corrected_loss_hand_value_and_direction_for_popular_item():
    logits = torch.tensor([[1.0, 1.0, 0.0]])
    popular_negative = torch.log(torch.tensor([0.1, 0.8, 0.1]))
    loss = sampled_softmax_loss(logq_correction(logits, popular_negative))
    # corrected logits: 1 - log 0.1, 1 - log 0.8, 0 - log 0.1
    expected = softmax_nll(1 - math.log(0.1), 1 - math.log(0.8), -math.log(0.1))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    uncorrected = sampled_softmax_loss(logits).item()
    # A popular negative is pushed down less: the loss of its row drops ...
    assert loss.item() < uncorrected
    # ... and a popular positive is credited less: the loss of its row grows.
    popular_positive = torch.log(torch.tensor([0.8, 0.1, 0.1]))
    assert sampled_softmax_loss(logq_correction(logits, popular_positive)).item() > uncorrected


def test_remove_accidental_hits_masks_duplicates_but_not_the_positive():
    ids = torch.tensor([5, 5, 9])
    out = remove_accidental_hits(LOGITS, ids, ids)
    masked = out < -1e30
    assert masked.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    torch.testing.assert_close(out[~masked], LOGITS[~masked])
    assert LOGITS[0, 1] == 1.0  # the input is not modified


def test_accidental_hit_is_not_a_negative_loss_equals_column_removed():
    ids = torch.tensor([5, 5, 9])
    loss = sampled_softmax_loss(remove_accidental_hits(LOGITS, ids, ids))
    expected = (softmax_nll(2.0, 0.5) + softmax_nll(1.5, -1.0) + softmax_nll(1.2, 0.0, 0.7)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_remove_accidental_hits_with_extra_columns_and_positive_columns():
    # Two rows, four candidates: row 0's positive is column 2, row 1's column 0.
    logits = torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]])
    positive_ids = torch.tensor([8, 4])
    candidate_ids = torch.tensor([4, 8, 8, 4])
    out = remove_accidental_hits(logits, positive_ids, candidate_ids, torch.tensor([2, 0]))
    assert (out < -1e30).tolist() == [[False, True, False, False], [False, False, False, True]]


def test_mask_logits_keeps_positive_columns():
    known = torch.tensor([[True, True, False], [False, True, True], [False, False, False]])
    out = mask_logits(LOGITS, known, positive_columns=torch.arange(3, dtype=torch.int32))
    assert (out < -1e30).tolist() == [
        [False, True, False],
        [False, False, True],
        [False, False, False],
    ]
    assert (mask_logits(LOGITS, known) < -1e30).tolist() == known.tolist()


def test_mask_logits_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 3\); got \(3,\)"):
        mask_logits(LOGITS, torch.ones(3, dtype=torch.bool))


def test_masked_value_is_finite_in_half_precision():
    for dtype in (torch.float16, torch.bfloat16):
        out = mask_logits(LOGITS.to(dtype), torch.eye(3, dtype=torch.bool))
        assert torch.isfinite(out).all()
        assert torch.isfinite(logq_correction(out, torch.full((3,), -20.0))).all()


def test_split_logits():
    positive, negative, negative_mask = split_logits(
        LOGITS, mask=torch.tensor([[False, True, False]] * 3)
    )
    torch.testing.assert_close(positive, torch.tensor([2.0, 1.5, 1.2]))
    assert negative is LOGITS
    assert negative_mask.tolist() == [
        [True, True, False],
        [False, True, False],
        [False, True, True],
    ]


# --- softmax / InfoNCE ---------------------------------------------------------------


def test_sampled_softmax_in_batch_diagonal():
    rows = [softmax_nll(2.0, 1.0, 0.5), softmax_nll(1.5, 0.3, -1.0), softmax_nll(1.2, 0.0, 0.7)]
    expected = sum(rows) / 3
    assert sampled_softmax_loss(LOGITS).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_with_extra_negatives_and_positive_columns():
    logits = LOGITS[:2]  # 2 rows, 2 batch columns + 1 shared extra negative
    expected = (softmax_nll(2.0, 1.0, 0.5) + softmax_nll(1.5, 0.3, -1.0)) / 2
    assert sampled_softmax_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    expected = (softmax_nll(0.5, 2.0, 1.0) + softmax_nll(0.3, 1.5, -1.0)) / 2
    for dtype in (torch.int64, torch.int32):
        loss = sampled_softmax_loss(logits, positive_columns=torch.tensor([2, 0], dtype=dtype))
        assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_weighted_mean():
    rows = [softmax_nll(2.0, 1.0, 0.5), softmax_nll(1.5, 0.3, -1.0), softmax_nll(1.2, 0.0, 0.7)]
    weight = torch.tensor([1.0, 3.0, 0.0])
    expected = (1 * rows[0] + 3 * rows[1]) / 4
    assert sampled_softmax_loss(LOGITS, weight=weight).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\); got \(2,\)"):
        sampled_softmax_loss(LOGITS, weight=torch.ones(2))


def test_sampled_softmax_needs_positive_columns_when_fewer_columns_than_rows():
    with pytest.raises(ValueError, match="pass positive_columns"):
        sampled_softmax_loss(LOGITS[:, :2])


def test_infonce_hand_value_and_mask():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.5, -0.5], [2.0, 1.0]])
    expected = (softmax_nll(1.0, 0.5, -0.5) + softmax_nll(0.0, 2.0, 1.0)) / 2
    assert infonce_loss(positive, negative).item() == pytest.approx(expected, rel=1e-6)
    # A masked negative counts as removed; a row with all negatives masked has loss 0.
    mask = torch.tensor([[False, True], [True, True]])
    expected = (softmax_nll(1.0, 0.5) + 0.0) / 2
    assert infonce_loss(positive, negative, mask).item() == pytest.approx(expected, rel=1e-6)


def test_infonce_weight():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.5, -0.5], [2.0, 1.0]])
    weight = torch.tensor([0.25, 0.75])
    expected = 0.25 * softmax_nll(1.0, 0.5, -0.5) + 0.75 * softmax_nll(0.0, 2.0, 1.0)
    loss = infonce_loss(positive, negative, weight=weight)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# --- BPR / BCE -------------------------------------------------------------------------


def test_bpr_hand_value_mask_and_weight():
    positive = torch.tensor([1.0, 0.0])
    negative = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    row0 = (softplus(-1.0) + softplus(1.0)) / 2  # -log sigmoid(x) = softplus(-x)
    row1 = (softplus(-1.0) + softplus(0.5)) / 2
    assert bpr_loss(positive, negative).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    mask = torch.tensor([[False, True], [True, True]])
    # Row 0 keeps one negative; row 1 has none and contributes 0.
    assert bpr_loss(positive, negative, mask).item() == pytest.approx(softplus(-1.0) / 2, rel=1e-6)
    weight = torch.tensor([3.0, 1.0])
    loss = bpr_loss(positive, negative, weight=weight)
    assert loss.item() == pytest.approx((3 * row0 + row1) / 4, rel=1e-6)


def test_bpr_on_in_batch_logits_via_split_logits():
    ids = torch.tensor([5, 5, 9])
    positive, negative, negative_mask = split_logits(LOGITS, mask=ids[:, None] == ids[None, :])
    rows = [softplus(-(2.0 - 0.5)), softplus(-(1.5 + 1.0)), (softplus(-1.2) + softplus(-0.5)) / 2]
    loss = bpr_loss(positive, negative, negative_mask)
    assert loss.item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_binary_cross_entropy_soft_labels_and_weight():
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([1.0, 0.0, 0.5])
    per_example = [math.log(2), softplus(2.0), 0.5 * softplus(1.0) + 0.5 * softplus(-1.0)]
    loss = binary_cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(sum(per_example) / 3, rel=1e-6)
    weight = torch.tensor([2.0, 0.0, 1.0])
    loss = binary_cross_entropy(logits, labels, weight)
    assert loss.item() == pytest.approx((2 * per_example[0] + per_example[2]) / 3, rel=1e-6)


def test_bce_loss_hand_value_negative_weight_and_mask():
    positive = torch.tensor([1.0, -0.5])
    negative = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    pos = [softplus(-1.0), softplus(0.5)]
    neg = [[softplus(0.0), softplus(2.0)], [softplus(-1.0), softplus(0.5)]]
    expected = (sum(pos) + sum(map(sum, neg))) / 6
    assert bce_loss(positive, negative).item() == pytest.approx(expected, rel=1e-6)
    expected = (sum(pos) + 0.5 * sum(map(sum, neg))) / (2 + 0.5 * 4)
    loss = bce_loss(positive, negative, negative_weight=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[False, True], [True, True]])
    expected = (sum(pos) + neg[0][0]) / 3
    assert bce_loss(positive, negative, mask).item() == pytest.approx(expected, rel=1e-6)
    weight = torch.tensor([1.0, 3.0])
    expected = (pos[0] + sum(neg[0]) + 3 * (pos[1] + sum(neg[1]))) / (3 + 3 * 3)
    loss = bce_loss(positive, negative, weight=weight)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bce_loss_positives_only():
    positive = torch.tensor([1.0, -0.5])
    expected = (softplus(-1.0) + softplus(0.5)) / 2
    assert bce_loss(positive).item() == pytest.approx(expected, rel=1e-6)


def test_pair_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"negative_logits must have shape \(2, 3\); got \(3, 3\)"):
        bpr_loss(torch.zeros(2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"negative_mask must have shape \(2, 3\)"):
        infonce_loss(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"positive_logits must have shape \(B,\)"):
        bce_loss(torch.zeros(2, 1), torch.zeros(2, 3))


# --- gradients, precision, registry ---------------------------------------------------


def _pipeline_losses(query: torch.Tensor, candidates: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every loss on in-batch logits of unit vectors, temperature 0.05, logQ and a hit."""
    logits = query @ candidates.T / 0.05
    ids = torch.tensor([0, 1, 1, 2])
    logits = logq_correction(logits, torch.log(torch.tensor([0.4, 0.3, 0.3, 0.2])))
    hits = ids[:, None] == ids[None, :]
    positive, negative, negative_mask = split_logits(logits, mask=hits)
    return {
        "softmax": sampled_softmax_loss(remove_accidental_hits(logits, ids, ids)),
        "infonce": infonce_loss(positive, negative, negative_mask),
        "bpr": bpr_loss(positive, negative, negative_mask),
        "bce": bce_loss(positive, negative, negative_mask),
    }


def _unit_rows(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)


def test_gradients_are_finite_with_masked_entries():
    query = _unit_rows(0).requires_grad_()
    candidates = _unit_rows(1).requires_grad_()
    for name, loss in _pipeline_losses(query, candidates).items():
        query_grad, candidates_grad = torch.autograd.grad(
            loss, [query, candidates], retain_graph=True
        )
        assert torch.isfinite(loss), name
        assert torch.isfinite(query_grad).all() and torch.isfinite(candidates_grad).all(), name
        assert query_grad.abs().sum() > 0, name


def test_bf16_autocast_is_finite_and_close_to_fp32():
    query, candidates = _unit_rows(2), _unit_rows(3)
    full = _pipeline_losses(query, candidates)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = _pipeline_losses(query, candidates)
    for name in full:
        assert torch.isfinite(half[name]), name
        # bf16 keeps ~3 significant digits; logits up to 1/0.05 = 20.
        expected = pytest.approx(full[name].item(), rel=0.05, abs=0.05)
        assert half[name].float().item() == expected, name


def test_a_batch_of_zero_weights_contributes_nothing_instead_of_nan():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
    loss = sampled_softmax_loss(logits, weight=torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()
    # Mixed signs divide by the absolute total, so a near-zero sum cannot blow the loss up.
    mixed = sampled_softmax_loss(logits.detach(), weight=torch.tensor([1.0, -1.0]))
    assert torch.isfinite(mixed)


# --- the retriever's softmax: logQ, accidental hits and known positives in one pass --------


def _composed_retrieval_loss(logits, positive_ids, candidate_ids, log_q, known_mask):
    """The same loss from the documented building blocks, one after the other."""
    corrected = logq_correction(logits, log_q) if log_q is not None else logits
    mask = positive_ids[:, None] == candidate_ids[None, :]
    if known_mask is not None:
        mask = mask | known_mask
    return sampled_softmax_loss(mask_logits(corrected, mask, torch.arange(len(logits))))


def test_retrieval_softmax_loss_hand_value_with_log_q_hit_and_known_positive():
    # Row 0: positive item 7 (column 0); column 1 is item 7 again (an accidental hit), column 2
    # a known positive of the row, column 3 the only negative. log q is subtracted per column.
    logits = torch.tensor([[2.0, 5.0, 4.0, 1.0]])
    log_q = torch.tensor([math.log(0.5), math.log(0.5), math.log(0.1), math.log(0.25)])
    known = torch.tensor([[True, False, True, False]])
    loss = retrieval_softmax_loss(logits, torch.tensor([7]), torch.tensor([7, 7, 3, 4]),
                                  log_q=log_q, known_mask=known)
    expected = softmax_nll(2.0 - math.log(0.5), 1.0 - math.log(0.25))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_log_q", [False, True])
def test_retrieval_softmax_loss_equals_the_composed_building_blocks(transposed, with_log_q):
    generator = torch.Generator().manual_seed(0)
    n = 6
    scores = torch.randn(n, n, generator=generator) * 5
    ids = torch.tensor([0, 1, 1, 2, 3, 3])
    known = torch.rand(n, n, generator=generator) < 0.3
    log_q = torch.log(torch.rand(n, generator=generator)) if with_log_q else None
    if transposed:  # the item-to-user half of the symmetric softmax passes a transposed view
        scores, known = scores.T, known.T
    fused = scores.clone().requires_grad_()
    reference = scores.clone().requires_grad_()
    loss = retrieval_softmax_loss(fused, ids, ids, log_q=log_q, known_mask=known)
    expected = _composed_retrieval_loss(reference, ids, ids, log_q, known)
    loss.backward()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(fused.grad, reference.grad)
    assert (fused.grad[known & ~torch.eye(n, dtype=torch.bool)] == 0).all()


def test_retrieval_softmax_loss_is_finite_in_bf16():
    logits = torch.randn(4, 4, dtype=torch.bfloat16) * 10
    ids = torch.arange(4)
    known = torch.ones(4, 4, dtype=torch.bool)  # every other column masked
    loss = retrieval_softmax_loss(logits, ids, ids, log_q=torch.zeros(4), known_mask=known)
    assert torch.isfinite(loss) and loss.item() == 0.0
