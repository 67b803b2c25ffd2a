"""Device and dtype choice, the network cache, the job slots (one job per device at a time), and out-of-memory
handling."""
from __future__ import annotations

import contextlib
import gc
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator, TypeVar

import torch

from engine.errors import InputError, ResourceError

M = TypeVar("M")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def choose_device(preference: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU; or cuda, cuda:N, mps, cpu. An explicit choice that is unavailable (no
    CUDA, or cuda:5 on a two-GPU machine) is an InputError naming it."""
    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?|mps|cpu", preference):
        raise InputError(f"Unknown device '{preference}'. Use auto, cuda, cuda:N (N counting from 0), mps or cpu.")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"Device {preference} was asked for but no CUDA GPU is visible to PyTorch. "
                             "Install a CUDA build of torch or use --device auto.")
        index, count = torch.device(preference).index, torch.cuda.device_count()
        if index is not None and index >= count:
            raise InputError(f"Device {preference} was asked for but only {count} CUDA GPU{'s' * (count != 1)} "
                             f"{'are' if count != 1 else 'is'} visible (cuda:0 to cuda:{count - 1}).")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for but Apple MPS is not available. Use --device auto.")
    return torch.device(preference)


def choose_dtype(preference: str, device: torch.device) -> torch.dtype:
    """auto: CUDA bf16 where supported else fp16; MPS fp16; CPU fp32."""
    preference = (preference or "auto").lower()
    if preference == "auto":
        if device.type == "cuda":
            with torch.cuda.device(device):  # this GPU's answer (slots may be on different GPU models)
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if preference not in DTYPES:
        raise InputError(f"Unknown dtype '{preference}'. Use auto, bf16, fp16 or fp32.")
    return DTYPES[preference]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def modules_of(obj: Any) -> list[torch.nn.Module]:
    """nn.Modules held by an object: itself, its module attributes, and modules inside dict attributes."""
    if isinstance(obj, torch.nn.Module):
        return [obj]
    found: list[torch.nn.Module] = []
    for value in getattr(obj, "__dict__", {}).values():
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, dict):
            found += [m for m in value.values() if isinstance(m, torch.nn.Module)]
    return found


def model_bytes(obj: Any, device: torch.device | None = None) -> int:
    """Bytes held by the parameters and buffers of an object's modules (shared tensors counted once); with `device`,
    only those that are on that kind of device now (an offloaded network's host copy costs the GPU nothing)."""
    seen: set[int] = set()
    total = 0
    for module in modules_of(obj):
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen and (device is None or tensor.device.type == device.type):
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def default_budget(device: torch.device, sharers: int = 1) -> int:
    """Bytes one model cache may hold: 85% of the GPU's memory, or 60% of free RAM on CPU, divided between the
    `sharers` job slots on that same device (two "cpu" slots share the RAM)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory * 0.85
    else:
        import psutil

        total = psutil.virtual_memory().available * 0.6
    return int(total / max(1, sharers))


@dataclass(frozen=True)
class NetworkKey:
    """What makes two loaded networks the same: the weights' folder (checkpoint snapshot and subfolder, or the file),
    the class built from them, and the dtype and device they were loaded to."""

    source: str
    kind: str
    dtype: str
    device: str

    @classmethod
    def of(cls, source: Any, kind: type, device: Any, dtype: torch.dtype) -> "NetworkKey":
        return cls(str(source), f"{kind.__module__}.{kind.__qualname__}", str(dtype), str(torch.device(device)))


class ModelCache:
    """Keeps loaded networks by key while a byte budget allows; evicts the least recently used.

    Networks are the unit: pipelines are cheap views built per job over the networks they get from here, so two
    tasks that use the same checkpoint share one copy. Each entry is sized by `sizer` when room is needed (by
    default the bytes it holds on the cache's device, so offloaded host copies do not count). Networks got inside
    `pinned()` are not evicted until it ends (the running job needs them all).

    Thread-safe: concurrent `get` calls for the same key build it once (others wait).
    """

    def __init__(self, budget_bytes: int, on_evict: Callable[[Hashable, Any], None] | None = None,
                 sizer: Callable[[Any], int] | None = None, device: torch.device | str = "cpu") -> None:
        self.budget = budget_bytes
        self.device = torch.device(device)
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._building: dict[Hashable, threading.Lock] = {}
        self._on_evict = on_evict
        self._sizer = sizer or (lambda value: model_bytes(value, self.device))
        self._pinned: list[set[Hashable]] = []
        self.builds: dict[Hashable, int] = {}  # how often each key was built (a rebuild follows an eviction)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    @property
    def used(self) -> int:
        with self._lock:
            return sum(self._sizer(value) for value in self._entries.values())

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Networks got inside this block stay until it ends, whatever the budget says."""
        keys: set[Hashable] = set()
        with self._lock:
            self._pinned.append(keys)
        try:
            yield
        finally:
            with self._lock:
                self._pinned.remove(keys)

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            self._pin(key)
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:  # built by another thread while we waited
                    self._entries.move_to_end(key)
                    return self._entries[key]
            value = build()
            with self._lock:
                self.make_room(self._sizer(value))
                self._entries[key] = value
                self.builds[key] = self.builds.get(key, 0) + 1
                self._building.pop(key, None)
            return value

    def _pin(self, key: Hashable) -> None:
        if self._pinned:
            self._pinned[-1].add(key)

    def make_room(self, incoming: int, keep: Iterable[Any] = ()) -> None:
        """Evict least recently used, unpinned networks (never those in `keep`) until `incoming` more bytes fit.
        Offload calls this before each stage brings its networks to the device."""
        keep_ids = {id(value) for value in keep}
        with self._lock:
            pinned = set().union(*self._pinned) if self._pinned else set()
            sizes = {key: self._sizer(value) for key, value in self._entries.items()}
            total = sum(sizes.values())
            evicted = False
            for key in list(self._entries):
                if total + incoming <= self.budget:
                    break
                if key in pinned or id(self._entries[key]) in keep_ids or not sizes[key]:
                    continue
                value = self._entries.pop(key)
                total -= sizes[key]
                evicted = True
                if self._on_evict:
                    self._on_evict(key, value)
        if evicted:
            gc.collect()
            empty_device_caches(self.device)

    def clear(self) -> None:
        with self._lock:
            while self._entries:
                old_key, value = self._entries.popitem(last=False)
                if self._on_evict:
                    self._on_evict(old_key, value)
        gc.collect()
        empty_device_caches(self.device)


def cached_network(cache: ModelCache | None, key: NetworkKey, build: Callable[[], M]) -> M:
    """`build()` through the cache when there is one (the engine's), else directly (tests, benchmarks)."""
    return cache.get(key, build) if cache is not None else build()


def empty_device_caches(device: torch.device | None = None) -> None:
    """Hand memory PyTorch keeps cached back to the device (`device`: that GPU's; else the current one's)."""
    if torch.cuda.is_available():
        on_gpu = device is not None and device.type == "cuda"
        with torch.cuda.device(device) if on_gpu else contextlib.nullcontext():
            torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


_DEVICE_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_DEVICE_LOCKS_GUARD = threading.Lock()


def device_lock(device: torch.device | str, worker: int = 0) -> threading.Lock:
    """The process-wide lock of one job slot on a device: only one job at a time uses it, whichever Engine, tab, CLI
    or API call runs it. `worker` numbers the slots of a device listed more than once (cpu,cpu: two CPU workers)."""
    device = torch.device(device)
    index = device.index
    if index is None:  # "cuda" is the current CUDA device, "cpu" and "mps" the only one
        index = torch.cuda.current_device() if device.type == "cuda" else 0
    with _DEVICE_LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault((f"{device.type}:{index}", worker), threading.Lock())


@dataclass(frozen=True)
class DeviceSlot:
    """Where one job runs: a device, the dtype used there, that slot's own network cache, and the slot's lock."""

    device: torch.device
    dtype: torch.dtype
    models: ModelCache
    lock: threading.Lock = field(repr=False, compare=False)


class DeviceSlots:
    """One job per device slot at a time; a job takes any free slot, and waiting jobs take them first come, first
    served (each told how many wait ahead of it). Thread-safe: tabs, API calls and batch threads share one engine."""

    def __init__(self, slots: Iterable[DeviceSlot]) -> None:
        self.slots = tuple(slots)
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()  # tickets of the jobs waiting, first in line first

    @property
    def first(self) -> DeviceSlot:
        return self.slots[0]

    def _grab(self) -> DeviceSlot | None:
        for slot in self.slots:
            if slot.lock.acquire(blocking=False):
                return slot
        return None

    def _release(self, slot: DeviceSlot) -> None:
        slot.lock.release()
        with self._changed:
            self._changed.notify_all()

    @contextlib.contextmanager
    def take(self, check_cancel: Callable[[], None], waiting: Callable[[int], None]) -> Iterator[DeviceSlot]:
        """Hold a free slot for the block, waiting in line for one if none is free. While waiting: `waiting(n)` each
        time the number of jobs ahead changes (first with the place on joining), and `check_cancel()` every quarter
        second (it raises to leave the line)."""
        ticket = object()
        with self._changed:
            slot = None if self._queue else self._grab()
            if slot is None:
                self._queue.append(ticket)
        try:
            shown = None
            while slot is None:
                with self._changed:
                    if self._queue[0] is ticket:
                        slot = self._grab()
                    if slot is not None:
                        self._queue.popleft()
                        self._changed.notify_all()
                        break
                    ahead = self._queue.index(ticket)
                    if ahead == shown:
                        self._changed.wait(0.25)  # woken when a slot frees or the line moves
                if ahead != shown:
                    waiting(ahead)
                    shown = ahead
                check_cancel()
        except BaseException:
            with self._changed:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                    self._changed.notify_all()
            raise
        try:
            yield slot
        finally:
            self._release(slot)

    @contextlib.contextmanager
    def take_if_free(self) -> Iterator[DeviceSlot | None]:
        """A free slot for the block without waiting, or None when every slot is busy or jobs wait for one (a
        preview never holds up a job)."""
        with self._changed:
            slot = None if self._queue else self._grab()
        try:
            yield slot
        finally:
            if slot is not None:
                self._release(slot)


@contextlib.contextmanager
def out_of_memory_as_resource_error(cache: ModelCache | None = None) -> Iterator[None]:
    """Turn a device out-of-memory error into a ResourceError after freeing what can be freed."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if cache is not None:
            cache.clear()
        gc.collect()
        empty_device_caches(cache.device if cache is not None else None)
        raise ResourceError(
            "The device ran out of memory. Try a smaller output size or fewer frames, start the app with "
            "--offload model, or use --dtype fp16/bf16 on a GPU. Cached models were freed; "
            "you can retry now.") from exc
