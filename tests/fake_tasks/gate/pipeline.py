"""One small network, loaded through the slot's network cache (so a test can see which cache and device it used)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from engine.pipelines.base import Pipeline
from engine.runtime import NetworkKey, cached_network


class GatePipeline(Pipeline):
    def __init__(self, net: torch.nn.Module, device: Any) -> None:
        self.net, self.device = net, device

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "GatePipeline":
        key = NetworkKey.of("gate", torch.nn.Linear, device, dtype)
        return cls(cached_network(networks, key, lambda: torch.nn.Linear(4, 4).to(device, dtype)), device)

    def networks(self) -> dict[str, Any]:
        return {"net": self.net}

    def __call__(self, inputs, options, progress=None, cancel=None) -> Any:
        return self.net


PIPELINE = GatePipeline
