"""ConST-CL's losses against references written from the authors' TF code (not from rhovid's).

The references re-trace tensorflow/models official/projects/const_cl/losses/losses.py (commit
0ca414d5) op by op in plain float64 torch: tf.split / l2_normalize / matmul, one-hot masks times
_LARGE_NUM = 1e9, softmax_cross_entropy_with_logits, einsum, argmax, gather_nd, reduce_logsumexp,
divide_no_nan. Values and gradients (via autograd through the reference) must agree to a relative
1e-6 for batches 1..8, so a detach or stop-gradient that the authors do not have fails here.
"""

from __future__ import annotations

import pytest
import torch

from rhovid.train.losses import ConSTCLGlobalLoss, ConSTCLLocalLoss

LARGE_NUM = 1e9


def _l2n(x):
    # tf.math.l2_normalize: x * rsqrt(max(sum(x^2), 1e-12))
    return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def _softmax_xent(labels, logits):
    return -(labels * torch.log_softmax(logits, dim=1)).sum(1)


def authors_global(inputs, temperature):
    """ContrastiveLoss.__call__, num_replicas = 1 (losses.py:62-99); inputs (2B, C) = [view 1; view 2]."""
    inputs1, inputs2 = torch.chunk(inputs, 2, dim=0)
    inputs1, inputs2 = _l2n(inputs1), _l2n(inputs2)
    b = inputs1.shape[0]
    labels = torch.nn.functional.one_hot(torch.arange(b), b * 2).to(inputs.dtype)
    masks = torch.nn.functional.one_hot(torch.arange(b), b).to(inputs.dtype)
    logits_aa = inputs1 @ inputs1.t() / temperature - masks * LARGE_NUM
    logits_bb = inputs2 @ inputs2.t() / temperature - masks * LARGE_NUM
    logits_ab = inputs1 @ inputs2.t() / temperature
    logits_ba = inputs2 @ inputs1.t() / temperature
    loss_a = _softmax_xent(labels, torch.cat([logits_ab, logits_aa], 1)).mean()
    loss_b = _softmax_xent(labels, torch.cat([logits_ba, logits_bb], 1)).mean()
    return loss_a + loss_b


def _authors_direction(lookup, translated, target, inst_mask, temperature, target_mask=None):
    """InstanceContrastiveLoss._compute_constrastive_loss, num_replicas = 1 (losses.py:305-356).

    ``target_mask`` (not in the authors' code, whose boxes are all valid) adds rhovid's rule for
    padded box sets: invalid targets leave the negatives, and a query without a valid target in
    its own video is not counted.
    """
    b, n = translated.shape[:2]
    batch_masks = torch.nn.functional.one_hot(torch.arange(b), b).to(translated.dtype)
    batch_masks = batch_masks[:, None, :, None].expand(b, n, b, n)
    logits_negative = torch.einsum("ijc,pqc->ijpq", translated, target) / temperature
    logits_negative = logits_negative - batch_masks * LARGE_NUM
    if target_mask is not None:
        logits_negative = logits_negative - (1 - target_mask.to(translated.dtype))[None, None] * LARGE_NUM
        inst_mask = inst_mask * target_mask.any(1).to(translated.dtype)[:, None, None]
    logits_negative = logits_negative.reshape(b * n, b * n)
    matched = target[lookup[..., 0], lookup[..., 1]]  # tf.gather_nd
    logits_positive = torch.einsum("ijc,ijc->ij", translated, matched) / temperature
    logits_positive = logits_positive.reshape(b * n, 1)
    logits_all = torch.cat([logits_positive, logits_negative], 1)
    loss = (torch.logsumexp(logits_all, 1) - torch.logsumexp(logits_positive, 1)) * inst_mask.reshape(b * n)
    total = inst_mask.sum()
    return loss.sum() / total if total > 0 else loss.sum() * 0.0  # divide_no_nan


def authors_local(a2b, b2a, inst_a, inst_b, masks_a, masks_b, temperature, mask_targets=False):
    """InstanceContrastiveLoss.__call__ (losses.py:155-200); ``mask_targets``: rhovid's padding rule."""
    qa, qb = masks_a.to(a2b.dtype)[..., None], masks_b.to(a2b.dtype)[..., None]
    a2b, b2a, inst_a, inst_b = _l2n(a2b), _l2n(b2a), _l2n(inst_a), _l2n(inst_b)
    b, n = inst_a.shape[:2]
    batch_index = torch.arange(b)[:, None].expand(b, n)
    similarity_ab = torch.einsum("ijc,ikc->ijk", inst_a, inst_b)
    if mask_targets:
        pair = masks_a[:, :, None] & masks_b[:, None, :]
        similarity_ab = similarity_ab - (~pair).to(a2b.dtype) * LARGE_NUM
    lookup_a2b = torch.stack([batch_index, similarity_ab.argmax(2)], -1)
    loss_a = _authors_direction(lookup_a2b, a2b, inst_b, qa, temperature, masks_b if mask_targets else None)
    lookup_b2a = torch.stack([batch_index, similarity_ab.argmax(1)], -1)
    loss_b = _authors_direction(lookup_b2a, b2a, inst_a, qb, temperature, masks_a if mask_targets else None)
    return 0.5 * (loss_a + loss_b)


def _leaves(*shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, dtype=torch.float64, generator=g).requires_grad_(True) for s in shapes]


def _grads(loss, leaves):
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("b", range(1, 9))
def test_global_loss_matches_authors(b):
    (z,) = _leaves((b, 2, 16), seed=b)
    got = ConSTCLGlobalLoss(0.1)(z)
    # The authors' model output is [view 1 of every video; view 2 of every video].
    want = authors_global(torch.cat([z[:, 0], z[:, 1]]), 0.1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(_grads(got, [z])[0], _grads(want, [z])[0], rtol=1e-6, atol=1e-12)
    if b > 1:
        assert float(want.detach()) > 0


@pytest.mark.parametrize("b", range(1, 9))
@pytest.mark.parametrize("k", [1, 4])
def test_local_loss_matches_authors(b, k):
    leaves = _leaves(*[(b, k, 12)] * 4, seed=10 * b + k)
    ones = torch.ones(b, k, dtype=torch.bool)
    got = ConSTCLLocalLoss(0.2)(*leaves, ones, ones)
    want = authors_local(*leaves, ones, ones, 0.2)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    for x, y in zip(_grads(got, leaves), _grads(want, leaves)):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("b", range(1, 9))
def test_local_loss_with_padded_boxes(b):
    """Partial masks: the authors' query weighting plus rhovid's rule for invalid targets."""
    leaves = _leaves(*[(b, 5, 12)] * 4, seed=100 + b)
    g = torch.Generator().manual_seed(b)
    ma, mb = torch.rand(b, 5, generator=g) > 0.3, torch.rand(b, 5, generator=g) > 0.3
    got = ConSTCLLocalLoss(0.2)(*leaves, ma, mb)
    want = authors_local(*leaves, ma, mb, 0.2, mask_targets=True)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    for x, y in zip(_grads(got, leaves), _grads(want, leaves)):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-12)


def test_local_loss_gradient_reaches_targets_and_positive_is_raw_argmax():
    """The authors detach nothing: the targets get gradient from positives and negatives; the
    positive is chosen on inst_a . inst_b, not on the reconstruction."""
    a2b, b2a, inst_a, inst_b = _leaves(*[(3, 4, 8)] * 4, seed=3)
    ones = torch.ones(3, 4, dtype=torch.bool)
    loss = ConSTCLLocalLoss(0.2)(a2b, b2a, inst_a, inst_b, ones, ones)
    grads = _grads(loss, [a2b, b2a, inst_a, inst_b])
    assert all(float(g.abs().sum()) > 0 for g in grads)
    # Make the reconstruction of region 0 equal to target 3, but the raw match target 1: the
    # raw argmax decides (a reconstruction-based choice would give a loss near its minimum).
    with torch.no_grad():
        x = torch.zeros(3, 4, 8, dtype=torch.float64)
        x[:, :, :4] = torch.eye(4)
        a2b2, ia, ib = x.clone() * 5, x.clone(), x.clone()
        a2b2[:, 0] = x[:, 3] * 5
        ib[:, 1] = x[:, 0]
        ib[:, 0] = x[:, 1]
    raw = authors_local(a2b2, a2b2, ia, ib, ones, ones, 0.2)
    torch.testing.assert_close(ConSTCLLocalLoss(0.2)(a2b2, a2b2, ia, ib, ones, ones), raw)


def test_local_loss_ignores_invalid_targets():
    """A padded (invalid) target slot is neither a positive nor a negative, whatever it holds."""
    a2b, b2a, inst_a, inst_b = _leaves(*[(2, 3, 8)] * 4, seed=5)
    ones = torch.ones(2, 3, dtype=torch.bool)
    mb = ones.clone()
    mb[1, 2] = False
    loss = ConSTCLLocalLoss(0.2)
    with torch.no_grad():
        dominant = inst_b.clone()
        dominant[1, 2] = inst_a[1].sum(0)  # would be the raw argmax of every region of video 1
        dominant[0, 0] = a2b[1].sum(0)  # and near every reconstruction of video 1 (a negative)
    torch.testing.assert_close(loss(a2b, b2a, inst_a, dominant, ones, mb),
                               authors_local(a2b, b2a, inst_a, dominant, ones, mb, 0.2, mask_targets=True))
    assert float(loss(a2b, b2a, inst_a, dominant, ones, mb).detach()) != pytest.approx(
        float(authors_local(a2b, b2a, inst_a, dominant, ones, ones, 0.2).detach()))


def test_local_loss_no_valid_queries_is_zero_with_graph():
    a2b, b2a, inst_a, inst_b = _leaves(*[(2, 2, 4)] * 4, seed=1)
    none = torch.zeros(2, 2, dtype=torch.bool)
    out = ConSTCLLocalLoss()(a2b, b2a, inst_a, inst_b, none, none)
    assert float(out.detach()) == 0.0
    out.backward()


def test_losses_are_fp32_under_bf16():
    z = torch.randn(4, 2, 16).bfloat16()
    assert ConSTCLGlobalLoss()(z).dtype == torch.float32
    r = torch.randn(4, 3, 16).bfloat16()
    m = torch.ones(4, 3, dtype=torch.bool)
    assert ConSTCLLocalLoss()(r, r, r, r, m, m).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(B, 2, D\)"):
        ConSTCLGlobalLoss()(torch.randn(4, 3, 16))
