"""Model offload: a pipeline's networks live in host memory and visit the device only for their own stage.

Peak device memory becomes the largest stage (plus activations) instead of all networks together, at the cost of one
host-to-device copy of each network per stage. Before a stage the engine's network cache is asked for room, so
networks that other tasks left on the device are evicted first when memory is short.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

Room = Callable[[int, Sequence[nn.Module]], None]
"""room(bytes, networks): make `bytes` of device memory available, never by evicting `networks`."""


def _bytes(modules: Iterable[nn.Module]) -> int:
    tensors = {id(t): t for m in modules for t in [*m.parameters(), *m.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


class ModelOffload:
    """`on_device(a, b)` brackets a stage; while disabled it changes nothing."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.enabled = False
        self._room: Room | None = None

    def enable(self, modules: Iterable[nn.Module], room: Room | None = None) -> None:
        """Move the networks to host memory and stage them from now on."""
        self.enabled, self._room = True, room
        for module in modules:
            module.to("cpu")

    @contextlib.contextmanager
    def on_device(self, *modules: nn.Module) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self._room is not None and self.device.type != "cpu":
            self._room(_bytes(modules), modules)
        try:
            for module in modules:
                module.to(self.device)
            yield
        finally:
            for module in modules:
                module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
