"""Losses against closed-form values, independent loop references and invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rhovid.train.losses import RhoBYOLLoss, RhoInfoNCE, RhoMoCoLoss, SwAVLoss, sinkhorn


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ---------------------------------------------------------------- rho-SimCLR InfoNCE

def _infonce_loops(z, tau):
    """One term per ordered (anchor, positive) pair; denominator = positive + other videos' clips."""
    z = F.normalize(z, dim=-1)
    b, rho, _ = z.shape
    terms = []
    for v in range(b):
        for i in range(rho):
            neg = sum(math.exp(float(z[v, i] @ z[u, j]) / tau) for u in range(b) if u != v for j in range(rho))
            for j in range(rho):
                if j != i:
                    p = math.exp(float(z[v, i] @ z[v, j]) / tau)
                    terms.append(-math.log(p / (p + neg)))
    return sum(terms) / len(terms)


def test_infonce_closed_form():
    e = torch.eye(4, dtype=torch.float64)
    z = torch.stack([e[0], e[0], e[1], e[1], e[2], e[2]]).reshape(3, 2, 4)
    # positive cos 1, four negatives at cos 0
    assert float(RhoInfoNCE(0.1)(z)) == pytest.approx(math.log(1 + 4 * math.exp(-10)), rel=1e-9)


@pytest.mark.parametrize("rho", [2, 3, 4])
def test_infonce_matches_loops(rho):
    z = torch.randn(5, rho, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(rho))
    assert float(RhoInfoNCE(0.2)(z)) == pytest.approx(_infonce_loops(z, 0.2), rel=1e-9)


def test_infonce_rho2_is_ntxent():
    """With rho=2 the loss equals SimCLR's NT-Xent written as a 2B-way cross-entropy."""
    b, tau = 6, 0.1
    z = _unit(b, 2, 16, seed=3)
    flat = torch.cat([z[:, 0], z[:, 1]])  # (2B, D): view-major as in SimCLR's reference code
    logits = flat @ flat.t() / tau
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    assert float(RhoInfoNCE(tau)(z)) == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-9)


def test_infonce_invariances():
    z = torch.randn(6, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss = RhoInfoNCE(0.1)
    base = float(loss(z))
    assert float(loss(z[torch.randperm(6)])) == pytest.approx(base, rel=1e-12)
    assert float(loss(z[:, torch.tensor([2, 0, 1])])) == pytest.approx(base, rel=1e-12)
    assert float(loss(3.0 * z)) == pytest.approx(base, rel=1e-12)  # normalised inside
    with pytest.raises(ValueError, match="rho >= 2"):
        loss(z[:, :1])


# ---------------------------------------------------------------- rho-MoCo

def _moco_loops(q, k, queue, tau):
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    terms = []
    for v in range(q.shape[0]):
        for i in range(q.shape[1]):
            neg = sum(math.exp(float(q[v, i] @ n) / tau) for n in queue)
            for j in range(q.shape[1]):
                if j != i:
                    p = math.exp(float(q[v, i] @ k[v, j]) / tau)
                    terms.append(-math.log(p / (p + neg)))
    return sum(terms) / len(terms)


def test_moco_closed_form():
    e = torch.eye(5, dtype=torch.float64)
    q = e[:2].repeat_interleave(3, 0).reshape(2, 3, 5)
    queue = e[2:].repeat(4, 1)  # 12 negatives orthogonal to every query
    assert float(RhoMoCoLoss(0.1)(q, q.clone(), queue)) == pytest.approx(math.log(1 + 12 * math.exp(-10)), rel=1e-9)


@pytest.mark.parametrize("rho", [2, 4])
def test_moco_matches_loops_and_invariances(rho):
    q = torch.randn(3, rho, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    k = torch.randn(3, rho, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    queue = _unit(10, 6, seed=9)
    loss = RhoMoCoLoss(0.2)
    base = float(loss(q, k, queue))
    assert base == pytest.approx(_moco_loops(q, k, queue, 0.2), rel=1e-9)
    perm = torch.randperm(rho)
    assert float(loss(q[:, perm], k[:, perm], queue)) == pytest.approx(base, rel=1e-12)
    assert float(loss(q[[2, 0, 1]], k[[2, 0, 1]], queue[torch.randperm(10)])) == pytest.approx(base, rel=1e-12)


def test_moco_keys_get_no_gradient():
    q = torch.randn(2, 2, 4, requires_grad=True)
    k = torch.randn(2, 2, 4, requires_grad=True)
    RhoMoCoLoss()(q, k, _unit(5, 4).float()).backward()
    assert q.grad is not None and k.grad is None


# ---------------------------------------------------------------- rho-BYOL

def test_byol_closed_form_and_loops():
    z = torch.randn(3, 2, 8, dtype=torch.float64)
    loss = RhoBYOLLoss()
    same = z[:, [0, 0]]  # both clips identical -> cos 1 everywhere
    assert float(loss(same, same)) == pytest.approx(0.0, abs=1e-12)
    assert float(loss(-same, same)) == pytest.approx(4.0, rel=1e-12)
    p = torch.randn(4, 3, 8, dtype=torch.float64)
    ref = [2 - 2 * float(F.cosine_similarity(p[b, i], z2, dim=0))
           for b in range(4) for i in range(3) for j, z2 in enumerate(torch.randn(4, 3, 8, dtype=torch.float64,
           generator=torch.Generator().manual_seed(0))[b]) if j != i]
    z4 = torch.randn(4, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert float(loss(p, z4)) == pytest.approx(sum(ref) / len(ref), rel=1e-12)
    perm = torch.tensor([1, 2, 0])
    assert float(loss(p[:, perm], z4[:, perm])) == pytest.approx(float(loss(p, z4)), rel=1e-12)


def test_byol_target_detached():
    p = torch.randn(2, 2, 4, requires_grad=True)
    z = torch.randn(2, 2, 4, requires_grad=True)
    RhoBYOLLoss()(p, z).backward()
    assert p.grad is not None and z.grad is None


# ---------------------------------------------------------------- SwAV

def _sinkhorn_numpy_style(scores, eps, iters):
    """Matrix scaling Q = diag(b) P diag(a), written with explicit scaling vectors."""
    p = torch.exp(scores.double() / eps)
    n, k = p.shape
    a = torch.ones(k, dtype=torch.float64)
    b = torch.ones(n, dtype=torch.float64) / p.sum()
    for _ in range(iters):
        a = (1.0 / k) / (p * b[:, None]).sum(0)
        b = (1.0 / n) / (p * a[None, :]).sum(1)
    return n * p * b[:, None] * a[None, :]


def test_sinkhorn_marginals_and_reference():
    scores = _unit(64, 16, seed=4) @ _unit(10, 16, seed=5).t()
    codes = sinkhorn(scores, 0.05, 3)
    torch.testing.assert_close(codes.sum(1), torch.ones(64, dtype=torch.float32), atol=1e-5, rtol=0)
    torch.testing.assert_close(codes.double(), _sinkhorn_numpy_style(scores, 0.05, 3), atol=1e-5, rtol=1e-4)
    # Enough iterations reach the equipartition: every prototype gets N/K samples.
    converged = sinkhorn(scores, 0.05, 500)
    torch.testing.assert_close(converged.sum(0), torch.full((10,), 6.4), atol=1e-3, rtol=0)
    # Cosine scores at the extremes (+-1, spread 2/eps = 40 in the exponent) in bf16 stay finite.
    extreme = torch.where(scores > 0, 1.0, -1.0).to(torch.bfloat16)
    assert torch.isfinite(sinkhorn(extreme, 0.05, 3)).all()


def test_swav_closed_form_and_loops():
    loss = SwAVLoss(0.1, 0.05, 3)
    assert float(loss(torch.zeros(4, 2, 7))) == pytest.approx(math.log(7), rel=1e-6)
    scores = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(2)) * 0.3
    codes = [sinkhorn(scores[:, j], 0.05, 3) for j in range(3)]
    ref = []
    for b in range(6):
        for i in range(3):
            logp = torch.log_softmax(scores[b, i] / 0.1, dim=0)
            for j in range(3):
                if j != i:
                    ref.append(-float((codes[j][b] * logp).sum()))
    assert float(loss(scores)) == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    perm = torch.randperm(6)
    assert float(loss(scores[perm])) == pytest.approx(float(loss(scores)), rel=1e-5)
    assert float(loss(scores[:, [2, 0, 1]])) == pytest.approx(float(loss(scores)), rel=1e-5)


def test_low_precision_inputs_give_fp32_losses():
    """Under bf16 autocast the heads emit bf16; every loss computes (and returns) fp32."""
    z = torch.randn(4, 2, 16).bfloat16()
    ref = float(RhoInfoNCE(0.1)(z.float()))
    out = RhoInfoNCE(0.1)(z)
    assert out.dtype == torch.float32 and float(out) == pytest.approx(ref, rel=1e-6)
    assert RhoBYOLLoss()(z, z.flip(1)).dtype == torch.float32
    assert RhoMoCoLoss()(z, z, _unit(8, 16).bfloat16()).dtype == torch.float32
    assert SwAVLoss()(z[..., :5].float().tanh().bfloat16()).dtype == torch.float32
