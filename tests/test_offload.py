import pytest
import torch
from torch import nn

from engine.offload import ModelOffload


class Recorder(nn.Linear):
    def __init__(self) -> None:
        super().__init__(2, 2)
        self.moves: list[str] = []

    def to(self, *args, **kwargs):  # type: ignore[override]
        self.moves.append(str(args[0]))
        return super().to(*args, **kwargs)


def test_disabled_offload_moves_nothing() -> None:
    net, offload = Recorder(), ModelOffload(torch.device("cpu"))
    with offload.on_device(net):
        pass
    assert net.moves == []


def test_each_stage_brings_its_networks_and_sends_them_back_even_on_error() -> None:
    a, b = Recorder(), Recorder()
    offload = ModelOffload(torch.device("cpu"))
    offload.enable(a, b)
    assert offload.enabled and a.moves == ["cpu"] and b.moves == ["cpu"]
    with offload.on_device(a):
        assert a.moves == ["cpu", "cpu"] and b.moves == ["cpu"]
    assert a.moves == ["cpu", "cpu", "cpu"]
    with pytest.raises(RuntimeError):
        with offload.on_device(b):
            raise RuntimeError("out of memory")
    assert b.moves == ["cpu", "cpu", "cpu"]
