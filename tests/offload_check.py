"""Shared check for model offload: every network runs, and only while its stage has it on the device."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from torch import nn

from engine.offload import ModelOffload


@contextlib.contextmanager
def checking_stages(offload: ModelOffload, networks: dict[str, nn.Module]) -> Iterator[None]:
    """Inside the block, fail if a network's forward runs outside an `on_device` stage naming it; at the end, fail
    if a network never ran."""
    assert offload.enabled
    staged: list[nn.Module] = []
    ran: set[str] = set()
    original = offload.on_device

    @contextlib.contextmanager
    def spy(*modules: nn.Module) -> Iterator[None]:
        with original(*modules):
            staged.extend(modules)
            try:
                yield
            finally:
                del staged[-len(modules):]

    def hook(name: str, network: nn.Module) -> Callable[..., None]:
        def check(module: nn.Module, args: object) -> None:
            assert any(network is m for m in staged), f"{name} ran while not on the device"
            ran.add(name)
        return check

    # every submodule, so networks used through methods other than forward (vae.encode/decode) count too
    handles = [module.register_forward_pre_hook(hook(name, net))
               for name, net in networks.items() for module in net.modules()]
    offload.on_device = spy  # type: ignore[method-assign]
    try:
        yield
    finally:
        del offload.on_device
        for handle in handles:
            handle.remove()
    assert ran == set(networks), f"networks never run: {set(networks) - ran}"


def run_checking_stages(offload: ModelOffload, networks: dict[str, nn.Module], job: Callable[[], object]) -> object:
    """Run `job` under `checking_stages`. Returns the job's result."""
    with checking_stages(offload, networks):
        return job()
