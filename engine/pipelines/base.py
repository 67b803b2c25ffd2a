"""The contract every pipeline follows, and the small helpers jobs hand to it."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import JobCancelled

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """Progress sink for callers that do not report progress."""


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
    """A plain class: built once from local checkpoint folders, then called per job.

    `paths` maps each checkpoint name of the task (as in configs/models.yaml) to the local
    snapshot folder that holds its files.
    """

    @classmethod
    @abstractmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any) -> "Pipeline":
        """Build the networks and load the published weights strictly."""

    @abstractmethod
    def __call__(self, inputs: Mapping[str, Any], options: Mapping[str, Any],
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> Any:
        """Run one job on validated inputs."""
