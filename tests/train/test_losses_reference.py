"""Every rho-loss in its preset form against a reference written from the authors' code.

The references below transcribe facebookresearch/SlowFast (commit 287ec00) statement by
statement, in float64, without using rhovid's losses:

- ``contrastive_forward`` (slowfast/models/contrastive.py:1058-1100): with ``SEQUENTIAL`` each
  clip k is a query in turn and ``scaler.scale(loss_k).backward()`` runs per query, so the
  objective whose gradient is applied is the SUM of the per-query losses; SimCLR takes the clip
  pairs ``inputs[k:k+2]`` and stops at the last clip. SwAV (no ``SEQUENTIAL`` in its config)
  runs one forward over all clips and one backward.
- SimCLR: ``contrastive.py:692-745``; MoCo: ``contrastive.py:424-483`` (and the ``keys`` of
  ``compute_key_feat``, computed under ``torch.no_grad``); BYOL: ``contrastive.py:485-568`` with
  ``sim_loss`` at ``contrastive.py:237-243``; SwAV: ``contrastive.py:570-643`` with ``sinkhorn`` at
  ``contrastive.py:824-839`` (one process).

Values and gradients must agree to a relative 1e-6 for rho = 2, 3, 4 and batch 1..8. A missing
``detach`` / ``no_grad`` (gradient through SwAV's codes, MoCo's keys or BYOL's targets) changes
the gradients and fails these tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rhovid.train.losses import RhoBYOLLoss, RhoInfoNCE, RhoMoCoLoss, SwAVLoss

CASES = [(rho, b) for rho in (2, 3, 4) for b in range(1, 9)]


def l2_norm(x):
    """PySlowFast's Normalize(power=2, dim=1) (contrastive.py:875-884)."""
    norm = x.pow(2).sum(1, keepdim=True).pow(1.0 / 2)
    return x.div(norm)


# ------------------------------------------------------------------ transcriptions of SlowFast


def slowfast_simclr(clips, T):
    """contrastive_forward's SEQUENTIAL loop over SimCLR pairs; returns the sum of the per-pair losses."""
    total = 0.0
    for k in range(len(clips)):
        if k < len(clips) - 1:
            vids = clips[k : k + 2]
        else:
            break
        q = l2_norm(vids[0])
        q2 = l2_norm(vids[1])
        out = torch.cat([q, q2], dim=0)
        sim_matrix = torch.exp(torch.mm(out, out.t().contiguous()) / T)
        mask = (torch.ones_like(sim_matrix) - torch.eye(out.shape[0], device=sim_matrix.device)).bool()
        sim_matrix = sim_matrix.masked_select(mask).view(out.shape[0], -1)
        pos_sim = torch.exp(torch.sum(q * q2, dim=-1) / T)
        pos_sim = torch.cat([pos_sim, pos_sim], dim=0)
        loss = (-torch.log(pos_sim / sim_matrix.sum(dim=-1))).mean()
        total = total + loss
    return total


def slowfast_moco(clips_q, clips_k, queue_x, T):
    """contrastive_forward's SEQUENTIAL loop over MoCo queries; keys under no_grad as compute_key_feat."""
    with torch.no_grad():
        keys = [l2_norm(x) for x in clips_k]
    nce_loss_fun = nn.CrossEntropyLoss(reduction="mean")
    total = 0.0
    for k in range(len(clips_q)):
        other_keys = keys[:k] + keys[k + 1 :]
        q = l2_norm(clips_q[k])
        queue_neg = torch.einsum("nc,kc->nk", [q, queue_x.clone().detach()])
        for j, key in enumerate(other_keys):
            out_pos = torch.einsum("nc,nc->n", [q, key]).unsqueeze(-1)
            lgt_k = torch.cat([out_pos, queue_neg], dim=1)
            if j == 0:
                logits = lgt_k
            else:
                logits = torch.cat([logits, lgt_k], dim=0)  # noqa: F821 (bound at j == 0, as in contrastive.py:467-473)
        logits = torch.div(logits, T)
        loss = nce_loss_fun(logits, torch.zeros(logits.shape[0], dtype=torch.long))
        total = total + loss
    return total


def slowfast_byol(preds, targets, T):
    """contrastive_forward's SEQUENTIAL loop over BYOL queries (sim_loss with CONTRASTIVE.T)."""

    def sim_loss(q, k):
        similarity = torch.einsum("nc,nc->n", [q, k])
        similarity /= T
        return -similarity.mean()

    with torch.no_grad():
        keys = [l2_norm(x) for x in targets]
    total = 0.0
    for k in range(len(preds)):
        other = keys[:k] + keys[k + 1 :]
        predictor = l2_norm(preds[k])
        loss_reg = sim_loss(predictor, other[0])
        for i in range(1, len(other)):
            loss_reg += sim_loss(predictor, other[i])
        loss_reg /= len(other)
        total = total + loss_reg
    return total


def slowfast_sinkhorn(Q, iters):
    with torch.no_grad():
        Q = Q.t()
        sum_Q = torch.sum(Q)
        Q /= sum_Q
        r = torch.ones(Q.shape[0], dtype=Q.dtype) / Q.shape[0]
        c = torch.ones(Q.shape[1], dtype=Q.dtype) / Q.shape[1]
        for _ in range(iters):
            Q *= (r / torch.sum(Q, dim=1)).unsqueeze(1)
            Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
        Q = Q / torch.sum(Q, dim=0, keepdim=True)
        return Q.t()


def slowfast_swav(outputs, T, eps=0.05):
    """The swav_use_public_code branch: codes of clips 0 and 1, predicted by every other clip."""
    n_clips = len(outputs)
    bs = outputs[0].size(0)
    output = torch.cat(outputs, dim=0)
    softmax = nn.Softmax(dim=1)
    loss_swav = 0
    swav_extra_crops = n_clips - 2
    crops_for_assign = np.arange(n_clips - swav_extra_crops)
    for crop_id in crops_for_assign:
        with torch.no_grad():
            out = output[bs * crop_id : bs * (crop_id + 1)]
            q = out / eps
            q = torch.exp(q).t()
            q = slowfast_sinkhorn(q.t(), 3)[-bs:]
        subloss = 0
        for v in np.delete(np.arange(n_clips), crop_id):
            p = softmax(output[bs * v : bs * (v + 1)] / T)
            subloss -= torch.mean(torch.sum(q * torch.log(p), dim=1))
        loss_swav += subloss / (n_clips - 1)
    loss_swav /= len(crops_for_assign)
    return loss_swav


# ------------------------------------------------------------------ comparison


def _leaves(*shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]


def _grads(loss, inputs):
    return [g if g is not None else torch.zeros_like(x)
            for g, x in zip(torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True), inputs)]


def _assert_same(ours, ref, inputs):
    """Value and the gradient w.r.t. every input agree to a relative 1e-6 (plus 1e-12 absolute: with
    batch 1 SimCLR's loss is identically 0 and the reference's gradient is rounding noise)."""
    torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-6, atol=1e-12)
    for g_ours, g_ref in zip(_grads(ours, inputs), _grads(ref, inputs)):
        err = float((g_ours - g_ref).abs().max())
        assert err <= 1e-6 * float(g_ref.abs().max()) + 1e-12, (err, g_ref.abs().max())


@pytest.mark.parametrize("rho,b", CASES)
def test_simclr_preset_loss_is_slowfasts(rho, b):
    (z,) = _leaves((b, rho, 16), seed=100 * rho + b)
    ref = slowfast_simclr([z[:, k] for k in range(rho)], T=0.1)
    _assert_same(RhoInfoNCE(0.1)(z), ref, [z])


@pytest.mark.parametrize("rho,b", CASES)
def test_moco_preset_loss_is_slowfasts(rho, b):
    q, k = _leaves((b, rho, 16), (b, rho, 16), seed=200 * rho + b)
    stdv = 1.0 / np.sqrt(16 / 3)  # the queue as PySlowFast initialises it (contrastive.py:80-84)
    queue = torch.rand(24, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(b)) * 2 * stdv - stdv
    ref = slowfast_moco([q[:, i] for i in range(rho)], [k[:, i] for i in range(rho)], queue, T=0.1)
    _assert_same(RhoMoCoLoss(0.1)(q, k, queue), ref, [q, k])


@pytest.mark.parametrize("rho,b", CASES)
def test_byol_preset_loss_is_slowfasts(rho, b):
    p, z = _leaves((b, rho, 16), (b, rho, 16), seed=300 * rho + b)
    ref = slowfast_byol([p[:, i] for i in range(rho)], [z[:, i] for i in range(rho)], T=0.5)
    _assert_same(RhoBYOLLoss(0.5)(p, z), ref, [p, z])


@pytest.mark.parametrize("rho,b", CASES)
def test_swav_preset_loss_is_slowfasts(rho, b):
    (x,) = _leaves((b, rho, 16), seed=400 * rho + b)
    protos = torch.nn.functional.normalize(torch.randn(30, 16, dtype=torch.float64,
                                                       generator=torch.Generator().manual_seed(rho)), dim=1)
    scores = torch.nn.functional.normalize(x, dim=-1) @ protos.t()  # run_swav_orig_encoder_q: prototypes(normalize(x))
    ref = slowfast_swav([scores[:, i] for i in range(rho)], T=0.1)
    _assert_same(SwAVLoss(0.1, 0.05, 3)(scores), ref, [x])


def test_swav_codes_carrying_gradient_would_fail():
    """The reference itself: with gradient through the codes the SwAV gradient is a different one,
    so the comparison above detects codes that carry gradient."""
    (x,) = _leaves((4, 2, 16), seed=7)
    protos = torch.nn.functional.normalize(torch.randn(30, 16, dtype=torch.float64), dim=1)
    scores = torch.nn.functional.normalize(x, dim=-1) @ protos.t()

    def with_grad_codes(s):
        total = 0
        for c in range(2):
            q = torch.exp(s[:, c] / 0.05)
            q = q / q.sum()
            for _ in range(3):
                q = q / q.sum(0, keepdim=True) / q.shape[1]
                q = q / q.sum(1, keepdim=True) / q.shape[0]
            q = q / q.sum(1, keepdim=True)
            total = total - (q * torch.log_softmax(s[:, 1 - c] / 0.1, dim=1)).sum(1).mean()
        return total / 2

    g_ref = _grads(slowfast_swav([scores[:, 0], scores[:, 1]], 0.1), [x])[0]
    g_bad = _grads(with_grad_codes(scores), [x])[0]
    assert float((g_bad - g_ref).abs().max()) > 1e-3 * float(g_ref.abs().max())
