import math

import torch

from engine.models.mofa.softsplat import splat_average, splat_sum
from tests.tolerance import assert_relative_close


def brute_force_average(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Per-pixel Python loop: bilinear forward splat of [values, 1], divided by the ones + 1e-7."""
    n, c, h, w = values.shape
    acc = [[[[0.0] * w for _ in range(h)] for _ in range(c + 1)] for _ in range(n)]
    for b in range(n):
        for y in range(h):
            for x in range(w):
                tx, ty = x + float(flow[b, 0, y, x]), y + float(flow[b, 1, y, x])
                if not (math.isfinite(tx) and math.isfinite(ty)):
                    continue
                x0, y0 = math.floor(tx), math.floor(ty)
                for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    weight = (1 - abs(tx - cx)) * (1 - abs(ty - cy))
                    if 0 <= cx < w and 0 <= cy < h:
                        for ch in range(c):
                            acc[b][ch][cy][cx] += float(values[b, ch, y, x]) * weight
                        acc[b][c][cy][cx] += weight
    out = torch.tensor(acc, dtype=torch.float64)
    return out[:, :c] / (out[:, c:] + 1e-7)


def test_matches_brute_force_with_out_of_bounds_and_non_finite_targets():
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(2, 3, 6, 7, generator=gen)
    flow = torch.randn(2, 2, 6, 7, generator=gen) * 3  # many targets leave the 6x7 map
    flow[0, 0, 1, 2] = float("nan")
    flow[1, 1, 4, 4] = float("inf")
    flow[1, 0, 0, 0] = -float("inf")
    expected = brute_force_average(values, flow)
    got = splat_average(values, flow)
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert_relative_close(got, expected)


def test_integer_shift_moves_content_and_leaves_zero_holes():
    values = torch.arange(16.0).view(1, 1, 4, 4)
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 0] = 1.0  # everything one pixel right
    out = splat_average(values, flow)
    assert_relative_close(out[0, 0, :, 1:], values[0, 0, :, :3])
    assert torch.all(out[0, 0, :, 0] == 0)


def test_sum_mode_conserves_mass_for_in_bounds_targets():
    values = torch.ones(1, 1, 5, 5)
    flow = torch.full((1, 2, 5, 5), 0.25)
    flow[..., -1, :] = 0
    flow[..., :, -1] = 0
    assert abs(float(splat_sum(values, flow).sum()) - 25.0) < 1e-4
