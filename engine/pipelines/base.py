"""The contract every pipeline follows, and the small helpers jobs hand to it."""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import InputError, JobCancelled
from engine.tasks import Options

Progress = Callable[[float, str], None]
OFFLOAD_MODES = ("none", "model")


def no_progress(fraction: float, message: str) -> None:
    """Progress sink for callers that do not report progress."""


class RemainingTime:
    """Wraps a Progress callback and appends "about N min left" to its messages.

    The pace is measured from the first report above the phase's start, so model loading does not inflate it; a
    fraction that goes back (a download finished and the run begins, say) starts a new phase.
    """

    def __init__(self, report: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self._report, self._clock = report, clock
        self._anchor: tuple[float, float] | None = None  # (time, fraction) where the pace is measured from
        self._last = -1.0

    def __call__(self, fraction: float, message: str) -> None:
        now = self._clock()
        if fraction < self._last:
            self._anchor = None
        self._last = fraction
        if self._anchor is None:
            if fraction > 0:
                self._anchor = (now, fraction)
        elif fraction > self._anchor[1] and fraction < 1:
            start, base = self._anchor
            left = (now - start) * (1 - fraction) / (fraction - base)
            message = f"{message} · about {_duration(left)} left"
        self._report(fraction, message)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 3600:
        return f"{round(seconds / 60):.0f} min"
    return f"{seconds / 3600:.1f} h"


class CancelToken:
    """Cooperative cancellation: pipelines call `check()` between steps/frames."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise JobCancelled("Cancelled by the user; no output was written.")


class Pipeline(ABC):
    """A plain class: a cheap view over loaded networks, built per job and called once or more.

    `paths` maps each checkpoint name of the task (as in configs/models.yaml) to the local snapshot folder that holds
    its files. `networks` is the engine's network cache: loading through it shares one copy of a network between
    tasks (tests and benchmarks leave it out and build directly). `offload` is "none" or "model".
    """

    device: Any
    dtype: Any
    offload: Any  # engine.offload.ModelOffload

    @classmethod
    @abstractmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "Pipeline":
        """Build the networks and load the published weights strictly."""

    @abstractmethod
    def networks(self) -> dict[str, Any]:
        """Every network the pipeline runs, by name (offload stages them; the contract test checks each runs)."""

    @classmethod
    def check_options(cls, options: Options) -> None:
        """Model invariants the option ranges cannot express (a multiple of 64, overlap < context): InputError."""

    @abstractmethod
    def __call__(self, inputs: Mapping[str, Any], options: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> Any:
        """Run one job on validated inputs and parsed options."""

    def with_offload(self, mode: str, networks: Any = None) -> "Pipeline":
        """mode "model": networks stay in host memory and visit the device for their stage only."""
        if mode not in OFFLOAD_MODES:
            raise InputError(f"Unknown offload mode '{mode}'. Use {' or '.join(OFFLOAD_MODES)}.")
        if mode == "model":
            self.offload.enable(self.networks().values(), room=networks.make_room if networks is not None else None)
        return self
