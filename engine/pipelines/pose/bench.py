"""Speed and memory of MagicAnimate's denoising step, with random weights (nothing is downloaded).

"full" builds the published architectures (UNet3D, appearance encoder, DensePose ControlNet, SD VAE) at 512x512;
"tiny" builds the test-size models at 64x64 on CPU. The step timed is the pipeline's own code path
(appearance encoder + per-frame ControlNet + all windows through the UNet3D with CFG).
"""
from __future__ import annotations

import resource
import time
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from engine.pipelines.base import CancelToken, no_progress
from engine.pipelines.pose.appearance import AppearanceEncoder, prune
from engine.pipelines.pose.context import padded_length, window_schedule
from engine.pipelines.pose.pipeline import PosePipeline, make_scheduler
from engine.pipelines.pose.tiny import TINY_CONTROLNET, TINY_UNET, TINY_VAE
from engine.pipelines.pose.unet3d import UNet3DConditionModel, UNet3DConfig
from engine.weights import frozen_on

SD_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4, "latent_channels": 4, "layers_per_block": 2,
          "norm_num_groups": 32, "sample_size": 512}
SD_UNET = {"cross_attention_dim": 768}  # every other SD1.5 UNet setting is the diffusers default
STEPS_FOR_ESTIMATE = 25


def _models(size: str) -> tuple[UNet3DConfig, dict[str, Any], dict[str, Any], dict[str, Any], int, int]:
    """(UNet3D config, UNet2D config, ControlNet config, VAE config, image size, text width)."""
    if size == "full":
        return UNet3DConfig(), SD_UNET, SD_UNET, SD_VAE, 512, 768
    if size == "tiny":
        unet = {k: v for k, v in TINY_UNET.items() if not k.startswith("_")}
        return UNet3DConfig.from_sd_config(TINY_UNET), unet, TINY_CONTROLNET, TINY_VAE, 64, TINY_UNET["cross_attention_dim"]
    raise ValueError(f"size must be 'full' or 'tiny', got {size!r}")


def build_random_pipeline(size: str, device: torch.device, dtype: torch.dtype) -> tuple[PosePipeline, int, int]:
    """A PosePipeline with random weights (no tokenizer/text encoder: the bench feeds a text embedding)."""
    unet3d_cfg, unet_cfg, controlnet_cfg, vae_cfg, image, text_width = _models(size)
    with torch.device(device):
        unet = UNet3DConditionModel(unet3d_cfg)
        appearance = AppearanceEncoder(prune(UNet2DConditionModel(**unet_cfg)))
        controlnet = ControlNetModel(**controlnet_cfg)
        vae = AutoencoderKL(**vae_cfg)
    models = [frozen_on(m, device, dtype) for m in (unet, appearance, controlnet, vae)]
    pipe = PosePipeline(tokenizer=None, text_encoder=None, vae=models[3], controlnet=models[2],  # type: ignore[arg-type]
                        appearance=models[1], unet=models[0], device=device, dtype=dtype)
    return pipe, image, text_width


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def bench(device: str, size: str = "full", frames: int = 16, steps: int = 2,
          dtype: str | None = None, offload: str = "none") -> dict[str, Any]:
    """Time `steps` denoising steps over `frames` frames (16 = one window) and the VAE decode; report peak memory.

    On CUDA one untimed warm-up step comes first (kernel selection); on CPU, where a full-size step takes
    minutes, it is left out. dtype: a torch dtype name; default float16 on CUDA, float32 elsewhere."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    dev = torch.device(device)
    dtype = getattr(torch, dtype) if dtype else (torch.float16 if dev.type == "cuda" else torch.float32)
    pipe, image, text_width = build_random_pipeline(size, dev, dtype)
    if offload != "none":
        pipe.enable_model_offload()
    total = padded_length(frames, 16)
    latents = torch.randn(1, 4, total, image // 8, image // 8, device=dev, dtype=dtype)
    text = torch.randn(1, 77, text_width, device=dev, dtype=dtype)
    reference = torch.randn(1, 4, image // 8, image // 8, device=dev, dtype=dtype)
    condition = torch.randint(0, 256, (total, 3, image, image), dtype=torch.uint8)
    windows = window_schedule(total, 16, 4)
    scheduler = make_scheduler()
    scheduler.set_timesteps(STEPS_FOR_ESTIMATE, device=dev)
    t = scheduler.timesteps[0]

    def step() -> None:
        pipe._predict_noise(latents, t, text, reference, condition, windows, 16, guided=True)

    if dev.type == "cuda":
        step()  # warm-up (kernel selection, allocator)
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    per_step = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    pipe._decode(latents[:, :, :frames], no_progress, CancelToken())
    _sync(dev)
    decode = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "size": size, "resolution": image, "frames": frames, "windows": len(windows), "dtype": str(dtype),
        "offload": offload,
        "s_per_step": round(per_step, 4),
        "s_per_frame_decode": round(decode / frames, 4),
        "s_per_frame_25_steps": round((STEPS_FOR_ESTIMATE * per_step + decode) / frames, 4),
        "peak_memory_gib": round(peak / 2**30, 3),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process max RSS",
    }
