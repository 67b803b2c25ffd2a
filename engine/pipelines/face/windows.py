"""MOFA-Keypoint's periodic sampling: videos longer than the 25 frames SVD was trained on, in overlapping windows.

Each window is frame 0 (the portrait, shared by all) plus a run of frames; every window is denoised at the same
timestep of the same step and the results are averaged frame by frame, weighted by how often the schedule lists them.
All numbers and rules from MOFA-Video-Keypoint/pipeline/svdxt_pipeline_ctrlnet_loop.py@3ad3b546da4c (`views`, the
`value`/`count` accumulation, `self.scheduler._step_index -= 1` for all but the last view) and mofa_keypoint.py
(window 25 from inference_opendomain.py's WINDOW_SIZE, stride = window_size // 2):
- views (1 + 12i, 12i + 25) for i < (N - 25) // 12 + 1, then (N - 24, N) appended even when it repeats the view
  before it (so it counts twice: N = 25 runs (1, 25) twice, N = 37 gives frames 13..24 a weight of 1/3 per view);
- window 0 contributes frame 0 and its frames, later windows only their frames (frame 0 comes from window 0 alone);
- a repeated view is denoised once here and added as many times as listed, in the original's order (same numbers,
  one UNet pass saved);
- N < 25 crashes the original; here it is one window of all N frames (what MOFA-Hybrid runs for short clips).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import EulerDiscreteScheduler

from engine import distributed

WINDOW = 25
STRIDE = WINDOW // 2


@dataclass(frozen=True)
class Window:
    """Frames [0] + [start, end) of the video; `weight`: how many times the original's schedule lists it."""

    start: int
    end: int
    weight: int = 1

    def __len__(self) -> int:
        return 1 + self.end - self.start

    def take(self, frames: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This window's frames of a per-frame tensor (frame axis `dim`)."""
        return torch.cat([frames.narrow(dim, 0, 1), frames.narrow(dim, self.start, self.end - self.start)], dim=dim)

    def take_flows(self, flows: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This window's flows (frame 0 -> t, one per frame t >= 1) of a [.., N-1, ..] flow tensor."""
        return flows.narrow(dim, self.start - 1, self.end - self.start)


def periodic_windows(frames: int, size: int = WINDOW, stride: int = STRIDE) -> list[Window]:
    """The schedule for a video of `frames` frames (frame 0 included)."""
    if frames < 2:
        raise ValueError(f"a video needs at least 2 frames, got {frames}")
    if frames < size:
        return [Window(1, frames)]
    views = [(1 + i * stride, i * stride + size) for i in range((frames - size) // stride + 1)]
    views.append((frames - size + 1, frames))
    windows: list[Window] = []
    for start, end in views:
        if windows and (windows[-1].start, windows[-1].end) == (start, end):
            windows[-1] = Window(start, end, windows[-1].weight + 1)
        else:
            windows.append(Window(start, end))
    return windows


def accumulate(value: torch.Tensor, count: torch.Tensor, window: Window, result: torch.Tensor, first: bool) -> None:
    """Add a window's result [B, len(window), ...] into the running sums, `window.weight` times in the original's
    order: the first listed view adds frame 0 and its frames, every other listing only its frames."""
    for repeat in range(window.weight):
        if first and repeat == 0:
            value[:, 0:window.end] += result
            count[:, 0:window.end] += 1
        else:
            value[:, window.start:window.end] += result[:, 1:]
            count[:, window.start:window.end] += 1


def step_windows(scheduler: EulerDiscreteScheduler, latents: torch.Tensor, t: torch.Tensor, windows: list[Window],
                 predict: Callable[[torch.Tensor, torch.Tensor, Window], torch.Tensor],
                 check: Callable[[], None] = lambda: None) -> torch.Tensor:
    """One sampler step over all windows: each window's latents [1, len, ...] get `predict(latents, t, window)` and a
    scheduler step at this step's sigma; the stepped windows are averaged by count.

    The original steps every window and rewinds the step index after all but the last; here every window is rewound
    and the index moved on once at the end: the same states, and also right for a rank of a job divided among
    devices (engine.distributed), which steps only its round-robin share of the windows (maybe none) before the
    sums and counts are added over all ranks. Every rank thus leaves the scheduler at the same index."""
    value = torch.zeros_like(latents)
    count = torch.zeros_like(latents)
    for i, window in distributed.my_share(list(enumerate(windows))):
        check()
        part = window.take(latents)
        stepped = scheduler.step(predict(part, t, window), t, part).prev_sample
        scheduler._step_index -= 1  # noqa: SLF001 - the original's rewind: all windows at this step's sigma
        accumulate(value, count, window, stepped, first=i == 0)
    if scheduler.step_index is None:  # a rank without a window on the first step
        scheduler._init_step_index(t)  # noqa: SLF001 - what the scheduler's own step does first
    scheduler._step_index += 1  # noqa: SLF001
    distributed.all_sum(value, count)
    return torch.where(count > 0, value / count, value)
