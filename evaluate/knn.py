"""Weighted k-nearest-neighbour classification on frozen features.

The rule of Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018, Sec. 3.4), as PySlowFast's kNN monitor implements it: cosine
similarity to every training feature, the k most similar vote for their class with weight
``exp(sim / T)``, and the class scores are ranked for top-1 / top-5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def knn_scores(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores of every test row.

    Args:
        train_x: (N, D) training features (any scale; cosine is used).
        train_y: (N,) long labels in [0, num_classes).
        test_x: (Q, D) query features.
        num_classes: C.
        k: neighbours that vote; capped to N.
        temperature: T in ``exp(sim / T)``.
        chunk: queries per similarity block (bounds memory at chunk x N).

    Returns:
        (Q, C) float32 summed vote weights.
    """
    if len(train_x) == 0:
        raise ValueError("kNN needs at least one training feature")
    if k < 1 or temperature <= 0:
        raise ValueError(f"kNN needs k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    k = min(k, len(train_x))
    bank = F.normalize(train_x.float(), dim=1)
    out = []
    for q in torch.split(F.normalize(test_x.float(), dim=1), chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (q, k)
        weight = (sim / temperature).exp()
        scores = torch.zeros(len(q), num_classes, dtype=torch.float32)
        scores.scatter_add_(1, train_y[idx], weight)
        out.append(scores)
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the ``k`` highest scores, per k (k capped to C).

    Ties are broken by the lower class index (stable sort).
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hit = order == labels[:, None]
    return {f"top{k}": float(hit[:, : min(k, scores.shape[1])].any(1).float().mean()) for k in ks}


def knn_eval(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 200,
    temperature: float = 0.07,
) -> dict:
    """kNN top-1 / top-5 accuracy (in %) of ``test`` against the ``train`` bank."""
    train_y_t = torch.as_tensor(train_y, dtype=torch.long)
    num_classes = int(max(train_y.max(initial=-1), test_y.max(initial=-1))) + 1
    scores = knn_scores(torch.as_tensor(train_x), train_y_t, torch.as_tensor(test_x), num_classes, k, temperature)
    acc = topk_accuracy(scores, torch.as_tensor(test_y, dtype=torch.long))
    return {
        "top1": 100 * acc["top1"],
        "top5": 100 * acc["top5"],
        "k": min(k, len(train_x)),
        "temperature": temperature,
        "num_classes": num_classes,
        "num_train": len(train_x),
        "num_test": len(test_x),
    }
