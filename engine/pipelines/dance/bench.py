"""Speed and memory of the CoNR pipeline with random weights: the once-per-character parser pass ("parser") and
the per-frame step ("frames") at the task's default working size."""
from __future__ import annotations

from torch import nn

from engine.bench import Harness, Measurements
from engine.pipelines.dance.networks import DanceNetConfig, build_networks
from engine.pipelines.dance.pipeline import DancePipeline
from engine.pipelines.dance.sheets import prepare_sheets
from engine.pipelines.dance.spec import SPEC
from engine.pipelines.dance.tiny import synthetic_sheet, synthetic_udp_frames

SETTINGS = {"sheets": 4, "frames": 3}  # character-sheet views (CoNR's examples use 4), frames timed
BENCH_FRAME_SIZE = (512, 384)
DEFAULTS = SPEC.parse_options()


def bench(harness: Harness, size: str, sheets: int, frames: int) -> Measurements:
    """One untimed frame first (allocator, kernels), then the parser on a new character, then `frames` frames."""
    config = DanceNetConfig.full() if size == "full" else DanceNetConfig.tiny()
    networks = harness.network(lambda: nn.ModuleDict(build_networks(config)))
    pipe = DancePipeline(dict(networks), harness.device, harness.dtype).with_offload(harness.offload)
    sheet_images = [synthetic_sheet(view % 4) for view in range(sheets)]
    inputs = {"sheets": sheet_images, "poses": synthetic_udp_frames(frames + 1, BENCH_FRAME_SIZE)}
    for _ in pipe(inputs, DEFAULTS.replace(frame_end=1)):
        pass
    harness.reset_peak()
    pipe._character = None  # time the parser as a new character would
    with harness.timer("parser"):
        pipe._parse_character(*prepare_sheets(sheet_images, DEFAULTS.working_size))
    with harness.timer("frames"):
        for _ in pipe(inputs, DEFAULTS.replace(frame_start=1)):
            pass
    return {"resolution": DEFAULTS.working_size, "s_per_frame": round(harness.timings["frames"] / frames, 4)}
