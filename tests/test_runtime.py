"""Device/dtype choice, the model cache (lazy, LRU eviction under a budget, thread-safe) and OOM handling."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from engine import runtime
from engine.errors import InputError, ResourceError


def test_cpu_defaults_to_fp32_and_explicit_dtypes_are_honoured() -> None:
    cpu = torch.device("cpu")
    assert runtime.choose_dtype("auto", cpu) == torch.float32
    assert runtime.choose_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(InputError, match="Unknown dtype"):
        runtime.choose_dtype("int8", cpu)


def test_unavailable_cuda_is_an_input_error() -> None:
    if torch.cuda.is_available():
        assert runtime.choose_device("cuda").type == "cuda"
    else:
        with pytest.raises(InputError, match="no CUDA GPU"):
            runtime.choose_device("cuda")
    assert runtime.choose_device("cpu").type == "cpu"


def test_model_bytes_counts_shared_tensors_once() -> None:
    class Pipe:
        def __init__(self) -> None:
            shared = torch.nn.Linear(10, 10)
            self.networks = {"a": shared, "b": shared}
            self.extra = torch.nn.Linear(10, 1, bias=False)

    assert runtime.model_bytes(Pipe()) == (110 + 10) * 4


def test_cache_builds_lazily_once_and_evicts_least_recently_used() -> None:
    built, evicted = [], []
    cache = runtime.ModelCache(budget_bytes=250, on_evict=lambda k, v: evicted.append(k), sizer=lambda v: 100)

    def builder(name):
        return lambda: built.append(name) or name

    assert cache.get("a", builder("a")) == "a"
    cache.get("b", builder("b"))
    cache.get("a", builder("a"))  # hit: a becomes most recent
    assert built == ["a", "b"]
    cache.get("c", builder("c"))  # 300 > 250: evict b (least recent), keep a
    assert evicted == ["b"] and set(cache.keys()) == {"a", "c"} and cache.used == 200


def test_concurrent_gets_build_one_instance() -> None:
    calls = []
    cache = runtime.ModelCache(budget_bytes=10**9, sizer=lambda v: 1)

    def slow_build():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow_build))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_out_of_memory_becomes_resource_error_and_frees_cache() -> None:
    cache = runtime.ModelCache(budget_bytes=10**9, sizer=lambda v: 1)
    cache.get("model", object)
    with pytest.raises(ResourceError, match="--offload"):
        with runtime.out_of_memory_as_resource_error(cache):
            raise torch.OutOfMemoryError("CUDA out of memory")
    assert cache.keys() == []


def test_pinned_networks_and_kept_ones_are_not_evicted() -> None:
    cache = runtime.ModelCache(budget_bytes=250, sizer=lambda v: 100)
    with cache.pinned():
        cache.get("a", lambda: "a")
        cache.get("b", lambda: "b")
        cache.get("c", lambda: "c")  # over budget, but a and b are in use by this job
        assert set(cache.keys()) == {"a", "b", "c"}
    cache.make_room(0, keep=["a"])  # after the job: the least recently used unpinned entry goes, never a kept one
    assert set(cache.keys()) == {"a", "c"}


def test_networks_are_sized_by_what_they_hold_on_the_cache_device() -> None:
    # a cache for another device (meta stands for a GPU here: nothing is allocated) does not count host copies
    cache = runtime.ModelCache(budget_bytes=10**9, device="meta")
    cache.get("host copy", lambda: torch.nn.Linear(10, 10))  # offloaded: on the host, costs the device nothing
    assert cache.used == 0
    cpu_cache = runtime.ModelCache(budget_bytes=10**9, device="cpu")
    cpu_cache.get("net", lambda: torch.nn.Linear(10, 10))
    assert cpu_cache.used == 110 * 4
