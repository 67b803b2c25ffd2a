"""What one upload or one run may cost, as engine settings (flags and ANIMATE_* variables, see engine/settings.py).

Checks read the limits in force with `current()`: the engine applies its configured limits around each run and preview
(`applied`), so input readers deep in a task need no extra parameter, and code outside the engine (tests, scripts)
gets the defaults.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 80_000_000  # below Pillow's decompression-bomb warning; a 48 MP phone photo passes
    max_video_frames: int = 1800  # frames decoded from one video after fps resampling (72 s at 25 fps)
    max_archive_bytes: int = 2 * 2**30  # uncompressed bytes read from one zip, all members together
    max_archive_members: int = 10_000  # files in one zip


_CURRENT: ContextVar[Limits] = ContextVar("limits", default=Limits())


def current() -> Limits:
    return _CURRENT.get()


@contextlib.contextmanager
def applied(limits: Limits) -> Iterator[Limits]:
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)
