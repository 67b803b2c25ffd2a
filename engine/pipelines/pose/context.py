"""Sliding-window denoising of long clips, as MagicAnimate does it.

The clip is padded to a multiple of the window length; one noise block of one window is tiled along time;
windows start every (context - overlap) frames and the last one wraps around to the clip start (closed loop);
each frame's prediction is the mean over the windows that contain it.
Defaults 16 / 4: context_frames / context_overlap in magicanimate/pipelines/pipeline_animation.py@d2bc3bc3c9cc;
the schedule is `uniform` in magicanimate/pipelines/context.py@d2bc3bc3c9cc.
"""
from __future__ import annotations

import torch


def padded_length(num_frames: int, context: int) -> int:
    """Frames after padding with the last frame, as the original: next multiple of `context`."""
    return -(-num_frames // context) * context


def window_schedule(num_frames: int, context: int = 16, overlap: int = 4) -> list[list[int]]:
    """The original's "uniform" schedule at step 0, stride 1, closed loop.

    32 frames -> [0..15], [12..27], [24..31, 0..7]; a clip no longer than one window is one window.
    """
    if not 0 <= overlap < context:
        raise ValueError(f"overlap must be in [0, {context - 1}], got {overlap}")
    if num_frames <= context:
        return [list(range(num_frames))]
    return [[i % num_frames for i in range(start, start + context)]
            for start in range(0, num_frames, context - overlap)]


def tiled_noise(shape: tuple[int, int, int, int, int], num_frames: int, generator: torch.Generator,
                dtype: torch.dtype) -> torch.Tensor:
    """One (b, c, context, h, w) noise block drawn on the generator's device, repeated to `num_frames`."""
    context = shape[2]
    if num_frames % context:
        raise ValueError(f"{num_frames} frames are not a multiple of the window length {context}")
    block = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return block.repeat(1, 1, num_frames // context, 1, 1)


class WindowAverage:
    """Sums predictions per frame over windows, then divides by how many windows covered each frame."""

    def __init__(self, like: torch.Tensor) -> None:
        """like: (b, c, frames, h, w) tensor giving shape, dtype and device."""
        self.total = torch.zeros_like(like)
        self.count = torch.zeros(like.shape[2], device=like.device, dtype=like.dtype)

    def add(self, window: list[int], prediction: torch.Tensor) -> None:
        index = torch.tensor(window, device=self.total.device)
        self.total.index_add_(2, index, prediction.to(self.total.dtype))
        self.count.index_add_(0, index, torch.ones(len(window), device=self.count.device, dtype=self.count.dtype))

    def mean(self) -> torch.Tensor:
        if bool((self.count == 0).any()):
            raise RuntimeError("some frames were not covered by any window")
        return self.total / self.count[None, None, :, None, None]
