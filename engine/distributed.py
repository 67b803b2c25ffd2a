"""One job across several devices: each denoising step's windows divided among processes, sums reduced.

As MagicAnimate's distributed demo (magicanimate/pipelines/pipeline_animation.py@d2bc3bc3c9cc, `global_context[rank::
world_size]`), every process ("rank") holds the whole model on its own device and runs the whole job with the same
seed, so noise, reference features and scheduler steps are identical everywhere; only the windows of a step are
shared round-robin, and the per-frame sums and counts are added up with `all_reduce` (the original gathers to rank 0
and broadcasts the latents back; an all-reduce hands every rank the same bits in one collective). The result is the
one-process result up to fp32 summation order.

Pipelines ask `my_share` for their windows and `all_sum` for their sums; both do nothing without a process group, so
a one-process run is unchanged bit for bit. Two ways in:
- `launch(devices, ...)`: one command (`--devices cuda:0,cuda:1`) spawns one process per device ("spawn" start
  method) joined over a free port on 127.0.0.1; the parent watches them, and the first failure ends all of them;
- `from_torchrun(...)`: under `torchrun --nproc-per-node N`, the process group comes from RANK/WORLD_SIZE/
  MASTER_ADDR/MASTER_PORT; torchrun itself ends the other ranks when one fails.
Backend: NCCL on CUDA devices, gloo on CPU ones (both reduce in place on the tensor's own device).
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.errors import InputError
from engine.tasks import TaskSpec

T = TypeVar("T")
GROUP_TIMEOUT = timedelta(hours=1)  # a rank waits this long for the others (a full-size CPU window takes minutes)
STOP_GRACE_S = 3.0  # after SIGTERM, a worker stuck in a collective (deaf to signals) is killed after this long


@dataclass(frozen=True)
class Rank:
    """This process's place in the group and the device it runs on."""

    rank: int
    world: int
    device: torch.device


class WorkerFailed(Exception):
    """A worker of a split job failed: its exit code and its one-line message (the others were stopped)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_split() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_split() else 0


def my_share(items: Sequence[T]) -> list[T]:
    """This rank's round-robin share: item i goes to rank i % world. Every item goes to exactly one rank and shares
    differ by at most one item, so no rank idles while another has two items left (items of equal cost)."""
    return list(items[rank()::dist.get_world_size()]) if is_split() else list(items)


def all_sum(*tensors: torch.Tensor) -> None:
    """Replace each tensor by its sum over all ranks, in place (nothing without a process group). Every rank gets
    the same result, so state derived from it (latents, the scheduler) stays identical on all ranks."""
    if is_split():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def agree(value: T) -> T:
    """Rank 0's value on every rank (e.g. a random seed drawn by each)."""
    if not is_split():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------------------------------- devices
def check_devices(names: Sequence[str]) -> list[torch.device]:
    """"cuda:0", "cuda:1" or "cpu", "cpu" -> devices; InputError naming any device that does not exist here, mixed
    kinds (one backend serves the group) or a GPU listed twice (NCCL needs one process per GPU)."""
    devices = []
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise InputError(f"Unknown device '{name}' in --devices; use cuda:N or cpu.") from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if not count:
                raise InputError(f"--devices lists '{name}' but no CUDA GPU is visible to PyTorch.")
            device = torch.device("cuda", device.index or 0)
            if device.index >= count:
                raise InputError(f"--devices lists '{name}' but this machine has {count} CUDA GPU(s) "
                                 f"(cuda:0 to cuda:{count - 1}).")
        elif device.type != "cpu":
            raise InputError(f"--devices lists '{name}': only CUDA GPUs and cpu can share one job.")
        devices.append(device)
    if len({d.type for d in devices}) > 1:
        raise InputError(f"--devices mixes GPUs and cpu ({', '.join(names)}); give devices of one kind.")
    gpus = [d for d in devices if d.type == "cuda"]
    if len(set(gpus)) < len(gpus):
        raise InputError(f"--devices lists a GPU twice ({', '.join(names)}); give each GPU once.")
    return devices


def check_task(tasks: Mapping[str, TaskSpec], task: str) -> None:
    """InputError unless the task denoises in windows (TaskSpec.splits_windows): only then can a job be divided."""
    if not tasks[task].splits_windows:
        able = " and ".join(name for name, spec in tasks.items() if spec.splits_windows)
        raise InputError(f"The {task} task cannot divide one job among several devices (only {able} denoise in "
                         f"windows); give it one device.")


def engine_device(device: torch.device) -> str:
    """Make `device` this process's current device; -> the --device name that then means it ("cuda" or "cpu")."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device.type


def _init_group(device: torch.device, **kwargs: Any) -> None:
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT, **kwargs)


def close_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------- torchrun
def torchrun_world() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def from_torchrun(devices: Sequence[str], default: str) -> Rank:
    """Join torchrun's process group. Device: --devices[LOCAL_RANK] when given, else cuda:LOCAL_RANK when the
    --device choice (`default`: auto/cuda/cpu) means CUDA and one is visible, else the CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if devices:
        if local >= len(devices):
            raise InputError(f"torchrun started more processes per node than --devices lists ({len(devices)}).")
        device = check_devices(devices)[local]
    elif default in ("auto", "cuda") and torch.cuda.is_available():
        device = check_devices([f"cuda:{local}"])[0]
    else:
        device = torch.device("cpu")
    engine_device(device)
    _init_group(device, init_method="env://")
    return Rank(dist.get_rank(), dist.get_world_size(), device)


# ----------------------------------------------------------------------------------------------------- spawning
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(devices: Sequence[torch.device], target: Callable[..., None], args: tuple,
           explain: Callable[[BaseException], tuple[int, str]]) -> None:
    """Run `target(Rank, *args)` in one spawned process per device, all in one process group.

    Returns when all succeeded. The first worker to fail ends the others (SIGTERM, then SIGKILL after
    STOP_GRACE_S, since a worker waiting in a collective does not see signals) and raises WorkerFailed with its exit
    code and message (`explain(exception)` in the worker). Ctrl+C / SIGTERM here (KeyboardInterrupt) also ends all."""
    context = mp.get_context("spawn")
    reports = context.SimpleQueue()
    port = free_port()
    workers = [context.Process(target=_worker, daemon=True, name=f"engine-rank{index}",
                               args=(index, list(devices), port, target, args, explain, reports))
               for index in range(len(devices))]
    try:
        for worker in workers:
            worker.start()
        running = {worker.sentinel: worker for worker in workers}
        while running:
            for sentinel in wait(list(running)):
                worker = running.pop(sentinel)
                worker.join()
                if worker.exitcode:
                    index = workers.index(worker)
                    died = f"the worker on {devices[index]} ended with exit code {worker.exitcode}"
                    raise WorkerFailed(*_first_failure(reports, (1, died)))
    finally:
        _stop(workers)


def _first_failure(reports: Any, otherwise: tuple[int, str]) -> tuple[int, str]:
    """The (code, message) of the failure that happened first: when one rank fails, the ranks waiting for it fail
    next ("connection closed by peer"), after it has reported (reports are written before the group is left)."""
    found = []
    while not reports.empty():
        found.append(reports.get())
    return min(found)[1:] if found else otherwise


def _stop(workers: list[Any]) -> None:
    alive = [w for w in workers if w.is_alive()]
    for worker in alive:
        worker.terminate()
    for worker in alive:
        worker.join(STOP_GRACE_S)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _worker(index: int, devices: list[torch.device], port: int, target: Callable[..., None], args: tuple,
            explain: Callable[[BaseException], tuple[int, str]], reports: Any) -> None:
    """One spawned rank: bind the device, join the group, run; a failure is reported and becomes the exit code."""
    from engine.jobs import stop_on_sigterm

    stop_on_sigterm()
    device = devices[index]
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # share the cores, not oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
    code = 0
    try:
        engine_device(device)
        _init_group(device, init_method=f"tcp://127.0.0.1:{port}", rank=index, world_size=len(devices))
        target(Rank(index, len(devices), device), *args)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent as a code and a line
        code, message = explain(exc)
        reports.put((time.time(), code, message))
    finally:
        close_group()
    sys.stdout.flush()
    sys.exit(code)
