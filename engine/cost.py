"""What a run will cost before it starts: time and memory from a per-task model of the work (frames, steps, size,
windows), calibrated by the README's "Measured performance" figures and refined by the pace of earlier runs on this
machine (the timings in their settings.json).

The model's unit is the benchmark machine's seconds: a 2-core x86 CPU (AMX), 2 threads, torch 2.13, bf16 weights for
the diffusion tasks, fp32 for CoNR and DensePose (README, "Measured performance"). Each run records that figure
("estimate" in settings.json); a later estimate on the same device scales it by how long such runs really took here.
Without an earlier run, a CPU estimate is the benchmark figure (fp32 costs more than bf16), and a GPU has no time
figure yet (none was benchmarked) but gets the memory figure (bf16 peak resident memory is a fair upper guide).
"""
from __future__ import annotations

import math
import statistics
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import AnimateError

# fp32 on a CPU against the bf16 figures: CoNR's 4.8-5.3 s/frame fp32 against 2.5-2.8 s/frame bf16 (README).
FP32_TIME = 1.9
FP32_MEMORY = 2.0  # fp32 weights take twice bf16's bytes, and the weights are most of the peak
PACE_RUNS = 10  # earlier runs (newest first) whose pace calibrates an estimate
CPU_FULL_SIZE_SECONDS = 30 * 60  # past this on a CPU, a warning suggests a smaller try first


@dataclass(frozen=True)
class Work:
    """A run's size as the model sees it: benchmark seconds and memory, and what they count."""

    seconds: float | None  # on the benchmark machine, None: never measured
    memory_gib: float | None
    counts: str  # "25 steps × 2 windows, 28 frames at 512"
    bf16_figures: bool  # the figures are bf16 runs (so fp32 costs more)
    full_size: bool  # the published working size (a CPU warning applies)
    note: str = ""  # what the model had to guess


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    memory_gib: float | None
    basis: str
    work: Work
    warning: str = ""

    def text(self) -> str:
        """One Markdown line for the box next to Run."""
        time = f"about {duration(self.seconds)}" if self.seconds is not None else "time not measured yet"
        memory = f"{self.memory_gib:.1f} GiB memory" if self.memory_gib is not None else "memory not measured"
        line = f"**Estimate:** {time} · {memory} — {self.work.counts}; {self.basis}."
        if self.work.note:
            line += f" {self.work.note}"
        if self.warning:
            line += f"\n\n⚠️ {self.warning}"
        return line


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------------- input sizes

def video_frames(path: Any, fps: float | None) -> int | None:
    """Frames a video gives at `fps` (None: its own rate), from its header; None when unknown or unreadable."""
    from engine import media

    if not path:
        return None
    try:
        info = media.video_info(path)
    except (AnimateError, OSError):
        return None
    if not info.frames:
        return None
    return max(1, round(info.frames * fps / info.fps)) if fps and info.fps else info.frames


def image_size(path: Any) -> tuple[int, int] | None:
    """(width, height) from a picture's header; None when there is none or it is unreadable."""
    from PIL import Image

    if not path:
        return None
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError):
        return None


def pose_frames(path: Any) -> int | None:
    """Frames of a dance pose input: .npz files in a zip, one .npz, or a video."""
    if not path:
        return None
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return 1
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
        except (OSError, zipfile.BadZipFile):
            return None
        npz = [n for n in names if n.lower().endswith(".npz")]
        return len(npz or names)
    return video_frames(path, None)


def _guessed(frames: int | None, default: int, what: str) -> tuple[int, str]:
    if frames is not None:
        return frames, ""
    return default, f"({what} not known yet: {default} frames assumed.)"


# ---------------------------------------------------------------------------------------------------- per task
# Every figure below is from README.md, "Measured performance" (full-size networks, random weights, 2-core CPU).

def _pose(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    from engine.pipelines.pose.context import padded_length, window_schedule

    frames, note = _guessed(video_frames(inputs.get("motion"), o["fps"]), o["context"], "The motion's length")
    windows = len(window_schedule(padded_length(frames, o["context"]), o["context"], o["overlap"]))
    area = (o["size"] / 512) ** 2
    # 512, bf16: one 16-frame window 225 s/step; 6 windows 962 s/step (so each further window ~147 s); decode
    # 4.4-4.8 s/frame; peak RSS 10.0 GiB whatever the length.
    step = (225 + (962 - 225) / 5 * (windows - 1)) * area
    seconds = o["steps"] * step + frames * 4.6 * area
    counts = f"{o['steps']} steps × {windows} window{'s' * (windows > 1)}, {frames} frames at {o['size']}"
    return Work(seconds, 10.0 * max(area, 0.5), counts, True, o["size"] >= 512, note)


def _densepose(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    frames, note = _guessed(video_frames(inputs.get("video"), o["fps"]), 25, "The video's length")
    # R_50_FPN, fp32: 33.6 s/frame (512 frame) to 40.2 s/frame (1080p); peak RSS 1.1 GiB.
    return Work(frames * 37.0 * (o["detect_size"] / 800) ** 2, 1.1, f"{frames} frames", False,
                o["detect_size"] >= 800, note)


def _mofa_area(inputs: Mapping[str, Any], size: int) -> float:
    """The working picture's area against 512x512: short side `size`, long side as the picture's aspect."""
    found = image_size(inputs.get("image"))
    aspect = max(found) / min(found) if found and min(found) else 1.0
    return size * size * aspect / 512**2


def _motion(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    area = _mofa_area(inputs, o["size"])
    scale = area * o["frames"] / 25
    # 512x512x25, bf16: 330 s/step, 907 s for 2 steps (so decoding ~9.9 s/frame); peak RSS 12.3 GiB.
    seconds = o["steps"] * 330 * scale + o["frames"] * 9.9 * area
    counts = f"{o['steps']} steps, {o['frames']} frames at {o['size']}"
    return Work(seconds, 12.3 * max(scale, 0.5), counts, True, o["size"] >= 512)


def _face(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    frames, note = _guessed(video_frames(inputs.get("driving"), o["fps"]), 25, "The driving video's length")
    frames = min(frames, 500)
    windows = math.ceil(frames / 25)
    area = _mofa_area(inputs, o["size"])
    # "roughly the trajectory task's 330 s/step (CPU, bf16) per window"; host memory beyond the networks about
    # 5.2 MB per frame at 512 (README, face row).
    seconds = (o["steps"] * 330 * windows + frames * 9.9) * area
    memory = 12.3 * max(area, 0.5) + frames * 5.2 / 1024 * area
    counts = f"{o['steps']} steps × {windows} window{'s' * (windows > 1)}, {frames} frames at {o['size']}"
    return Work(seconds, memory, counts, True, o["size"] >= 512, note)


def _dance(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    frames = pose_frames(inputs.get("poses"))
    note = "" if frames is not None else "(The poses' length is read when the run starts: 100 frames assumed.)"
    frames = frames if frames is not None else 100
    end = frames if o["frame_end"] < 0 else min(frames, o["frame_end"])
    frames = max(1, end - o["frame_start"])
    area = (o["working_size"] / 256) ** 2
    # 256 working size, 4 sheets, fp32: 4.8-5.3 s/frame, peak RSS 2.2-2.4 GB; sheet parser 0.38-0.50 s.
    seconds = frames * 5.05 * area + 0.44
    return Work(seconds, 2.3 * max(area, 0.5), f"{frames} frames at working size {o['working_size']}", False,
                o["working_size"] >= 256, note)


def _fourd(inputs: Mapping[str, Any], o: Mapping[str, Any]) -> Work:
    # No full-size time was measured (it needs a GPU); weights in bf16: UNet 3.75 + OpenCLIP 1.18 + conditioning
    # encoder 0.06 + decoder 0.18 GiB; building them peaks at 5.64 GiB resident.
    return Work(None, 5.64, f"{o['steps']} steps at {o['size']}", True, o["size"] >= 576)


MODELS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Work]] = {
    "pose": _pose, "densepose": _densepose, "motion": _motion, "face": _face, "dance": _dance, "fourd": _fourd}


# ---------------------------------------------------------------------------------------------------- estimate

def work(task: str, inputs: Mapping[str, Any], options: Mapping[str, Any]) -> Work | None:
    """The task's work for these inputs and parsed options; None for a task without a cost model."""
    model = MODELS.get(task)
    return model(inputs, options) if model else None


def pace(task: str, device: str, runs: list[Mapping[str, Any]]) -> tuple[float, int] | None:
    """(median of measured run seconds / modelled seconds, how many runs) over the newest earlier runs of this task
    on this device type; None without one. `runs`: settings.json contents, newest first."""
    kind = device.split(":")[0]
    ratios = []
    for settings in runs:
        modelled = (settings.get("estimate") or {}).get("model_s")
        measured = (settings.get("timings_s") or {}).get("run")
        if settings.get("task") != task or str(settings.get("device", "")).split(":")[0] != kind:
            continue
        if modelled and measured:
            ratios.append(measured / modelled)
        if len(ratios) == PACE_RUNS:
            break
    return (statistics.median(ratios), len(ratios)) if ratios else None


def estimate(task: str, inputs: Mapping[str, Any], options: Mapping[str, Any], device: str, dtype: str,
             runs: list[Mapping[str, Any]]) -> Estimate | None:
    """Time and memory for a run on `device` with `dtype` (fp32, bf16, fp16 or auto); None for a task without a cost
    model."""
    found = work(task, inputs, options)
    if found is None:
        return None
    on_cpu = device.startswith("cpu")
    fp32 = dtype == "fp32"
    memory = found.memory_gib
    if memory is not None and found.bf16_figures and fp32:
        memory *= FP32_MEMORY
    measured = pace(task, device, runs)
    seconds: float | None = None
    if found.seconds is not None and measured:
        ratio, count = measured
        seconds = found.seconds * ratio
        basis = f"{device}, from the pace of {count} earlier run{'s' * (count > 1)} here"
    elif found.seconds is not None and on_cpu:
        seconds = found.seconds * (FP32_TIME if found.bf16_figures and fp32 else 1.0)
        basis = f"{device} {dtype}, from the benchmark CPU (2 cores); refined after a first run"
    else:
        basis = f"{device}: no benchmark on this kind of device yet; shown after a first run"
    warning = ""
    if on_cpu and found.full_size and (seconds is None or seconds > CPU_FULL_SIZE_SECONDS):
        warning = ("Full-size work on a CPU: this takes hours. Try a smaller size, fewer steps or frames first, "
                   "or run on a GPU.")
    return Estimate(seconds, memory, basis, found, warning)
