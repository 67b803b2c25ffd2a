"""Model offload: a pipeline's networks live in CPU memory and visit the device only for their own stage.

Peak device memory becomes the largest stage (plus activations) instead of all networks together, at the
cost of one host-to-device copy of each network per stage. `--offload model` and `--offload sequential`
both select it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class ModelOffload:
    """`on_device(a, b)` brackets a stage; while disabled it changes nothing."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.enabled = False

    def enable(self, *modules: nn.Module) -> None:
        """Move the networks to the CPU and stage them from now on."""
        self.enabled = True
        for module in modules:
            module.to("cpu")

    @contextlib.contextmanager
    def on_device(self, *modules: nn.Module) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        try:
            for module in modules:
                module.to(self.device)
            yield
        finally:
            for module in modules:
                module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
