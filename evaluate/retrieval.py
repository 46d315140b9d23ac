"""Nearest-neighbour video retrieval: test clips query the training clips.

The protocol of the self-supervised video retrieval literature (Xu et al., "Self-supervised
Spatiotemporal Learning via Video Clip Order Prediction", CVPR 2019, Sec. 4.4; followed by
Han et al. CoCLR and others): each test video's feature queries the training set by cosine
similarity; R@k counts a query correct when any of its top-k neighbours has its class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RECALL_AT = (1, 5, 10, 20)


def retrieval_eval(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    ks: tuple[int, ...] = RECALL_AT,
    chunk: int = 1024,
) -> dict:
    """Recall@k (in %) for every k in ``ks`` (k capped to the gallery size).

    Args:
        train_x: (N, D) gallery features; train_y: (N,) labels.
        test_x: (Q, D) query features; test_y: (Q,) labels.
        ks: the cut-offs.
        chunk: queries per similarity block.
    """
    if len(train_x) == 0:
        raise ValueError("retrieval needs a non-empty gallery (train split)")
    gallery = F.normalize(torch.as_tensor(train_x).float(), dim=1)
    gy = torch.as_tensor(train_y, dtype=torch.long)
    kmax = min(max(ks), len(gallery))
    hits = []
    for q, qy in zip(
        torch.split(F.normalize(torch.as_tensor(test_x).float(), dim=1), chunk),
        torch.split(torch.as_tensor(test_y, dtype=torch.long), chunk),
    ):
        idx = (q @ gallery.T).topk(kmax, dim=1).indices  # (q, kmax) most similar first
        hits.append(gy[idx] == qy[:, None])
    hit = torch.cat(hits) if hits else torch.zeros(0, kmax, dtype=torch.bool)
    out = {f"R@{k}": 100 * float(hit[:, : min(k, kmax)].any(1).float().mean()) for k in ks}
    out.update({"num_gallery": len(train_x), "num_queries": len(test_x)})
    return out
