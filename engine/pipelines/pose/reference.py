"""How MagicAnimate pairs the appearance encoder's attention blocks (writers) with the UNet's (readers).

Both sides list the transformer blocks of the mid block then the up blocks, in module order, and sort them by
channel width, widest first; Python's sort is stable, so equal widths keep module order. Writer i feeds reader i.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def order_by_width(items: Sequence[T], width: Callable[[T], int]) -> list[T]:
    """Stable sort by width, descending (the original's `sorted(key=-width)`)."""
    return sorted(items, key=lambda item: -width(item))
