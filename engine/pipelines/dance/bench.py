"""Speed and memory of the CoNR pipeline with random weights: `bench("cpu")`, `bench("cuda", size="tiny")`."""
from __future__ import annotations

import resource
import time

import torch

from engine.pipelines.dance.networks import DanceNetConfig
from engine.pipelines.dance.pipeline import WORKING_SIZE, DancePipeline
from engine.pipelines.dance.sheets import prepare_sheets
from engine.pipelines.dance.tiny import random_networks, synthetic_sheet, synthetic_udp_frames

BENCH_FRAME_SIZE = (512, 384)


def bench(device: str, size: str = "full", sheets: int = 4, frames: int = 3, dtype: str | None = None) -> dict:
    """Time the once-per-character parser pass and the per-frame step at the 256 working size.

    dtype defaults to float16 on CUDA and float32 elsewhere. peak_mem_mb is the CUDA allocator's peak,
    or the process's peak resident memory on CPU.
    """
    torch_device = torch.device(device)
    torch_dtype = getattr(torch, dtype) if dtype else (torch.float16 if torch_device.type == "cuda" else torch.float32)
    config = DanceNetConfig.full() if size == "full" else DanceNetConfig.tiny()
    pipe = DancePipeline(random_networks(config, seed=0), torch_device, torch_dtype)
    sheet_images = [synthetic_sheet(view % 4) for view in range(sheets)]
    poses = synthetic_udp_frames(frames + 1, BENCH_FRAME_SIZE)
    inputs = {"sheets": sheet_images, "poses": poses}

    for _ in pipe(inputs, {"frame_end": 1}):  # warm-up: allocator, kernels
        pass
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)

    pipe._character = None  # time the parser as a new character would
    start = _now(torch_device)
    pipe._parse_character(*prepare_sheets(sheet_images, WORKING_SIZE))
    parser_s = _now(torch_device) - start

    start = _now(torch_device)
    for _ in pipe(inputs, {"frame_start": 1}):
        pass
    per_frame = (_now(torch_device) - start) / frames

    if torch_device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(torch_device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"parser_s": round(parser_s, 3), "s_per_frame": round(per_frame, 3), "peak_mem_mb": round(peak, 1),
            "device": str(torch_device), "dtype": str(torch_dtype).removeprefix("torch."), "size": size,
            "sheets": sheets, "frames": frames, "threads": torch.get_num_threads()}


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
