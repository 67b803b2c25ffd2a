"""Forward (splatting) warp of feature maps by optical flow, in plain torch.

MOFA's original uses a CuPy CUDA kernel (softmax-splatting "avg" mode). This is the same maths with
`index_add_`: every source pixel is moved by its flow vector and spread bilinearly onto the four
neighbouring target pixels; targets outside the map or with non-finite coordinates are dropped. The
"avg" mode splats an extra channel of ones and divides by it (+1e-7), so overlapping sources are
averaged and holes stay zero. Runs on any device; always computes in float32 like the original.
"""
from __future__ import annotations

import torch

_EPS = 1e-7  # the 0.0000001 of softsplat()'s 'avg' mode, MOFA-Video-Traj/models/softsplat.py@3ad3b546da4c


def splat_sum(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sum-splat `values` [N,C,H,W] along `flow` [N,2,H,W] (x then y, in pixels); float32 result."""
    n, c, h, w = values.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"flow must be [{n},2,{h},{w}], got {list(flow.shape)}")
    values = values.float()
    flow = flow.float()
    device = values.device
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w) + flow[:, 0]
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1) + flow[:, 1]
    finite = torch.isfinite(xs) & torch.isfinite(ys)
    xs = torch.where(finite, xs, torch.zeros_like(xs))
    ys = torch.where(finite, ys, torch.zeros_like(ys))
    x0 = torch.floor(xs)
    y0 = torch.floor(ys)
    # [C, N*H*W] source layout so one index_add_ per corner handles the whole batch.
    src = values.permute(1, 0, 2, 3).reshape(c, n * h * w)
    base = (torch.arange(n, device=device) * (h * w)).view(n, 1, 1)
    out = values.new_zeros(c, n * h * w)
    corners = (
        (x0, y0, (x0 + 1 - xs) * (y0 + 1 - ys)),
        (x0 + 1, y0, (xs - x0) * (y0 + 1 - ys)),
        (x0, y0 + 1, (x0 + 1 - xs) * (ys - y0)),
        (x0 + 1, y0 + 1, (xs - x0) * (ys - y0)),
    )
    for cx, cy, weight in corners:
        valid = finite & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        index = base + cy.clamp(0, h - 1).long() * w + cx.clamp(0, w - 1).long()
        weight = torch.where(valid, weight, torch.zeros_like(weight)).reshape(1, -1)
        out.index_add_(1, index.reshape(-1), src * weight)
    return out.reshape(c, n, h, w).permute(1, 0, 2, 3)


def splat_average(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Softmax-splatting "avg" mode: splat [values, 1] and divide by the splatted ones + 1e-7.

    Returns float32 [N,C,H,W]; callers cast back to their working dtype.
    """
    ones = values.new_ones(values.shape[0], 1, *values.shape[2:])
    summed = splat_sum(torch.cat([values.float(), ones.float()], dim=1), flow)
    return summed[:, :-1] / (summed[:, -1:] + _EPS)
