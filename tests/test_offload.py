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
    offload.enable([a, b])
    assert offload.enabled and a.moves == ["cpu"] and b.moves == ["cpu"]
    with offload.on_device(a):
        assert a.moves == ["cpu", "cpu"] and b.moves == ["cpu"]
    assert a.moves == ["cpu", "cpu", "cpu"]
    with pytest.raises(RuntimeError):
        with offload.on_device(b):
            raise RuntimeError("out of memory")
    assert b.moves == ["cpu", "cpu", "cpu"]


class Placed(Recorder):
    """Records where it is sent without moving (so a CUDA stage can be checked on a CPU-only machine)."""

    def to(self, *args, **kwargs):  # type: ignore[override]
        self.moves.append(str(args[0]))
        return self


def test_a_device_stage_first_asks_for_room_for_its_networks() -> None:
    a, b = Placed(), Placed()
    asked: list[tuple[int, tuple]] = []
    offload = ModelOffload(torch.device("cuda"))
    offload.enable([a, b], room=lambda size, keep: asked.append((size, tuple(keep))))
    with offload.on_device(a):
        assert a.moves == ["cpu", "cuda"]
    assert asked == [((4 + 2) * 4, (a,))] and a.moves[-1] == "cpu" and b.moves == ["cpu"]
