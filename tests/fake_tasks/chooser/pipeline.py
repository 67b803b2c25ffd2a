"""Records the checkpoint folders it was loaded with; loads no network."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from engine.pipelines.base import Pipeline


class ChooserPipeline(Pipeline):
    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = dict(paths)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "ChooserPipeline":
        return cls(paths)

    def networks(self) -> dict:
        return {}

    def __call__(self, inputs, options, progress=None, cancel=None) -> list[str]:
        return sorted(self.paths)


PIPELINE = ChooserPipeline
