"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard linear evaluation of self-supervised representations (Feichtenhofer et al.
CVPR 2021, Sec. 4 "linear classification protocol"; here on stored, view-averaged features
as in the SimCLR/CLIP L-BFGS probes rather than with augmented SGD). The objective is
convex, ``mean_i CE(W x_i + b, y_i) + wd/2 * ||W||^2``, so full-batch L-BFGS reaches its
unique minimiser; weight decay is chosen on a held-out part of the training split and the
probe is refitted on all of it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rhovid.evaluate.knn import topk_accuracy

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def standardise(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Subtract the training mean and divide by the training std (per dimension)."""
    mean = train_x.mean(0, keepdims=True)
    std = train_x.std(0, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)  # constant dimensions stay 0
    return [(x - mean) / std for x in (train_x, *others)]


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + wd/2 ||W||^2 with full-batch L-BFGS (float64).

    Args:
        x: (N, D) features; y: (N,) long labels.
        num_classes: C.
        weight_decay: L2 strength on W (the bias is not decayed).
        max_iter: L-BFGS iterations.

    Returns:
        W (C, D) and b (C,) float64.
    """
    x = x.double()
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = logistic_objective(x, y, w, b, weight_decay)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def logistic_objective(x, y, w, b, weight_decay: float) -> torch.Tensor:
    """mean_i CE(x_i W^T + b, y_i) + wd/2 * ||W||_F^2 (scalar)."""
    return F.cross_entropy(x @ w.T + b, y) + 0.5 * weight_decay * (w * w).sum()


def _split_val(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/val row indices: ``fraction`` of each class (at least 1 if it has 2+)."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(fraction * len(rows))) if len(rows) > 1 else 0
        n_val = max(n_val, 1) if len(rows) > 1 else 0
        va.extend(rows[:n_val])
        tr.extend(rows[n_val:])
    return np.sort(np.array(tr, dtype=np.int64)), np.sort(np.array(va, dtype=np.int64))


def linear_eval(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    weight_decays: tuple[float, ...] = WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    max_iter: int = 500,
    seed: int = 0,
) -> dict:
    """Linear-probe top-1 / top-5 (in %) on ``test`` after fitting on ``train``.

    Weight decay is picked by validation accuracy (ties -> stronger decay) on a stratified
    ``val_fraction`` of train, then the probe is refitted on all of train.
    """
    num_classes = int(max(train_y.max(initial=-1), test_y.max(initial=-1))) + 1
    xtr, xte = standardise(train_x.astype(np.float64), test_x.astype(np.float64))
    ytr = torch.as_tensor(train_y, dtype=torch.long)
    sweep = {}
    if len(weight_decays) > 1:
        tr, va = _split_val(train_y, val_fraction, seed)
        if len(va) and len(tr):
            # standardise with the sub-train statistics, as the final probe does with train's
            a, v = standardise(train_x[tr].astype(np.float64), train_x[va].astype(np.float64))
            for wd in weight_decays:
                w, b = fit_logistic(torch.as_tensor(a), ytr[tr], num_classes, wd, max_iter)
                pred = (torch.as_tensor(v) @ w.T + b).argmax(1)
                sweep[wd] = float((pred == ytr[va]).double().mean())
    if not weight_decays:
        raise ValueError("linear_eval needs at least one weight decay")
    # no sweep possible (one value, or too few videos to hold any out): the middle of the grid
    best = max(sweep, key=lambda wd: (sweep[wd], wd)) if sweep else weight_decays[len(weight_decays) // 2]
    w, b = fit_logistic(torch.as_tensor(xtr), ytr, num_classes, best, max_iter)
    scores = torch.as_tensor(xte) @ w.T + b
    acc = topk_accuracy(scores, torch.as_tensor(test_y, dtype=torch.long))
    train_acc = float(((torch.as_tensor(xtr) @ w.T + b).argmax(1) == ytr).double().mean())
    return {
        "top1": 100 * acc["top1"],
        "top5": 100 * acc["top5"],
        "train_top1": 100 * train_acc,
        "weight_decay": best,
        "val_top1_by_weight_decay": {str(k): 100 * v for k, v in sweep.items()},
        "num_classes": num_classes,
        "num_train": len(train_x),
        "num_test": len(test_x),
    }
