"""Comparisons that hold on any x86 CPU.

Intel and AMD kernels (and different batch shapes on one CPU) differ in the last bits, so results computed two ways
are compared by their largest difference relative to the size of the values, never by an absolute tolerance.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

RTOL = 1e-4  # fp32 results of the same maths in another order or batch shape agree to about 1e-6 of their scale


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().double().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def relative_error(actual: Any, expected: Any) -> float:
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    a, e = _array(actual), _array(expected)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape}"
    scale = np.abs(e).max() if e.size else 0.0
    difference = np.abs(a - e).max() if e.size else 0.0
    return float(difference / scale) if scale else float(difference)


def assert_relative_close(actual: Any, expected: Any, rtol: float = RTOL) -> None:
    error = relative_error(actual, expected)
    assert error <= rtol, f"relative error {error:.3g} > {rtol:g}"
