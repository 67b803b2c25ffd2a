"""Speed/memory benchmark of SV4D 2.0 and SV3D with random weights (no download): building the networks, then
windows of the real sampling loop (conditioning, denoising steps, decoding) at the published sizes (full) or the
test sizes (tiny). SV3D (`--set model=sv3d_u` / `sv3d_p`) runs its one 21-view sample the same way.

At 576 px one denoising step is one UNet call on the CFG batch of 2 x T x V latents (sv4d2: 96 at 72x72), far too
slow for a CPU beyond a check: `--set resolution=64 --set steps=1 --set windows=1` runs the full architectures on
tiny pictures; a GPU takes the defaults."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import nn

from engine.bench import Harness, Measurements
from engine.tasks import Options

from .clip import OpenCLIPImageEmbedder
from .config import SV3D_MODELS, FourDConfig, built_in_config, parse_config
from .pipeline import FourDPipeline, Networks
from .sampler import windows
from .sv3d_config import SV3DConfig
from .sv3d_pipeline import SV3DNetworks, SV3DPipeline
from .unet import SpatialUNetModelWithTime
from .vae import ConditionEncoder, Decoder
from .video_unet import VideoUNet

M = TypeVar("M", bound=nn.Module)
# the task's defaults (steps 50, chunks 8 / 4); resolution 0: 576 (full) or 64 (tiny); windows 0: every window
SETTINGS = {"model": "sv4d2", "steps": 50, "resolution": 0, "windows": 0, "encode_chunk": 8, "decode_chunk": 4}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build (and randomise) directly in the working dtype: the build's peak is then the model's own size."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype if dtype.is_floating_point else previous)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _builder(harness: Harness) -> Callable[..., nn.Module]:
    def network(factory: Callable[[], M], dtype: torch.dtype | None = None) -> M:
        with default_dtype(dtype or harness.dtype):
            return harness.network(factory, dtype)

    return network


def random_networks(harness: Harness, config: FourDConfig) -> Networks:
    network = _builder(harness)

    encoder = network(lambda: ConditionEncoder(config.encoder))
    return Networks(unet=network(lambda: SpatialUNetModelWithTime(config.unet)),
                    clip=network(lambda: OpenCLIPImageEmbedder(config.clip)), frames_encoder=encoder,
                    view_encoder=encoder, decoder=network(lambda: Decoder(config.decoder), torch.float32))


def bench(harness: Harness, size: str, model: str, steps: int, resolution: int, windows: int, encode_chunk: int,
          decode_chunk: int) -> Measurements:
    """Time the build, then `windows` windows (0: all) of `steps` steps; per-step and per-window figures."""
    if model in SV3D_MODELS:
        return bench_sv3d(harness, size, model, steps, resolution, decode_chunk)
    if model == "sv4d":
        return bench_sv4d(harness, size, steps, resolution, encode_chunk, decode_chunk)
    config = _config(model, size)
    resolution = resolution or (576 if size == "full" else 64)
    with harness.timer("build"):
        nets = random_networks(harness, config)
    build_peak, kind = harness.peak_memory()
    pipeline = FourDPipeline.assemble(model, config, nets, harness.device, harness.dtype, harness.offload)
    all_windows = len(_windows(model, config))
    count = windows or all_windows
    frames = (np.random.RandomState(0).rand(21, resolution, resolution, 3) * 255).astype(np.uint8)
    options = Options({"model": model, "elevation": 0.0, "steps": steps, "seed": 23, "size": resolution,
                       "encode_chunk": encode_chunk, "decode_chunk": decode_chunk})
    stamps, record = harness.stamper()

    class Enough(Exception):
        pass

    def stamp(fraction: float, message: str) -> None:
        record(fraction, message)
        if message.startswith(f"Window {count + 1}/"):
            raise Enough

    harness.reset_peak()
    with harness.timer("windows"), contextlib.suppress(Enough):
        pipeline({"frames": frames, "model_config": None}, options, progress=stamp)
    step_times = [b[1] - a[1] for a, b in zip(stamps, stamps[1:]) if "denoising step" in b[0]
                  and "denoising step" in a[0]]
    first_step = next(i for i, (m, _) in enumerate(stamps) if "denoising step 0/" in m)
    return {"resolution": resolution, "windows_run": count, "windows_per_video": all_windows,
            "latents_per_unet_call": 2 * config.n_time * config.n_view,
            "s_per_step": round(float(np.median(step_times)), 3),
            "s_conditioning_first_window": round(stamps[first_step][1] - stamps[0][1], 3),
            "build_peak_memory_gib": round(build_peak, 3), "build_peak_memory_kind": kind,
            "unet_parameters": sum(p.numel() for p in nets.unet.parameters())}


def _windows(model: str, config: FourDConfig) -> list[int]:
    return windows(model, 21, config.n_time)


def random_sv3d_networks(harness: Harness, config: SV3DConfig) -> SV3DNetworks:
    network = _builder(harness)
    return SV3DNetworks(unet=network(lambda: VideoUNet(config.unet)),
                        clip=network(lambda: OpenCLIPImageEmbedder(config.clip)),
                        encoder=network(lambda: ConditionEncoder(config.encoder)),
                        decoder=network(lambda: Decoder(config.decoder), torch.float32))


def bench_sv3d(harness: Harness, size: str, model: str, steps: int, resolution: int, decode_chunk: int
               ) -> Measurements:
    """Build, then one 21-view sample of `steps` steps: s/step, conditioning and decoding times, peak memory."""
    config = _config(model, size)
    resolution = resolution or (576 if size == "full" else 64)
    with harness.timer("build"):
        nets = random_sv3d_networks(harness, config)
    build_peak, kind = harness.peak_memory()
    pipeline = SV3DPipeline.assemble(model, config, nets, harness.device, harness.dtype, harness.offload)
    image = (np.random.RandomState(0).rand(resolution, resolution, 3) * 255).astype(np.uint8)
    options = Options({"model": model, "elevation": 10.0, "elevations": "", "azimuths": "", "steps": steps,
                       "seed": 23, "size": resolution, "decode_chunk": decode_chunk})
    stamps, stamp = harness.stamper()

    harness.reset_peak()
    with harness.timer("sample"):
        pipeline({"image": image, "model_config": None}, options, progress=stamp)
    run_peak, _ = harness.peak_memory()
    decoding_from = next(when for message, when in stamps if message == "Decoding")
    step_times = [b[1] - a[1] for a, b in zip(stamps, stamps[1:]) if "step" in a[0] and "step" in b[0]]
    return {"resolution": resolution, "latents_per_unet_call": 42,
            "s_per_step": round(float(np.median(step_times)), 3),
            "s_conditioning": round(stamps[1][1] - stamps[0][1], 3),
            "s_decoding": round(stamps[-1][1] - decoding_from, 3),
            "build_peak_memory_gib": round(build_peak, 3), "sample_peak_memory_gib": round(run_peak, 3),
            "peak_memory_kind": kind, "unet_parameters": sum(p.numel() for p in nets.unet.parameters())}


def _config(model: str, size: str) -> Any:
    """The published config (full) or the test-size one (tiny: no tiny writer code runs in production)."""
    if size == "full":
        return built_in_config(model)
    from .tiny import tiny_config_data

    return parse_config(tiny_config_data(model), model, source=f"tiny {model}")


def bench_sv4d(harness: Harness, size: str, steps: int, resolution: int, encode_chunk: int, decode_chunk: int
               ) -> Measurements:
    """Build SV4D and SV3D_u, then one whole video: the orbit of frame 0, the anchors and the 5 dense windows."""
    from .sv4d1 import SV4DPipeline

    config, orbit_config = _config("sv4d", size), _config("sv3d_u", size)
    resolution = resolution or (576 if size == "full" else 64)
    with harness.timer("build"):
        nets, orbit_nets = random_networks(harness, config), random_sv3d_networks(harness, orbit_config)
    build_peak, kind = harness.peak_memory()
    pipeline = SV4DPipeline.assemble("sv4d", config, nets, harness.device, harness.dtype, harness.offload)
    pipeline.orbit_pipeline = SV3DPipeline.assemble("sv3d_u", orbit_config, orbit_nets, harness.device,
                                                    harness.dtype, harness.offload)
    frames = (np.random.RandomState(0).rand(21, resolution, resolution, 3) * 255).astype(np.uint8)
    options = Options({"model": "sv4d", "elevation": 10.0, "steps": steps, "seed": 23, "size": resolution,
                       "encode_chunk": encode_chunk, "decode_chunk": decode_chunk})
    stamps, stamp = harness.stamper()

    harness.reset_peak()
    with harness.timer("video"):
        pipeline({"frames": frames, "model_config": None}, options, progress=stamp)
    run_peak, _ = harness.peak_memory()
    step_times = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])
                  if "Window" in a[0] and "denoising step" in a[0] and "denoising step" in b[0]]
    return {"resolution": resolution, "latents_per_unet_call": 2 * config.n_time * config.n_view,
            "s_per_dense_step": round(float(np.median(step_times)), 3), "unet_calls": 2 * steps + 5 * steps,
            "build_peak_memory_gib": round(build_peak, 3), "video_peak_memory_gib": round(run_peak, 3),
            "peak_memory_kind": kind}
