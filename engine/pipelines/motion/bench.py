"""Speed/memory benchmark of the trajectory pipeline with random weights (no download needed)."""
from __future__ import annotations

import resource
import time

import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from torch import nn

from engine.weights import frozen_on

from engine.models.mofa.cmp import CMP, CMPConfig
from engine.models.mofa.controlnet import FlowControlNet
from .pipeline import MotionPipeline
from engine.models.mofa.svd_unet import MofaSVDUNet
from .tiny import SVD_SCHEDULER, TINY_CLIP, TINY_CMP, TINY_UNET, TINY_VAE

FULL_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                layers_per_block=2, latent_channels=4, sample_size=768)
FULL_CLIP = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                 image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")


def _random(module_factory, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Build on the meta device, allocate directly on `device`, fill with small random values."""
    with torch.device("meta"):
        module = module_factory()
    module = module.to_empty(device=device)
    with torch.no_grad():
        for name, buffer in module.named_buffers():  # non-persistent index buffers (CLIP position ids)
            if name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.normal_(0, 0.02) if tensor.ndim > 1 else tensor.fill_(1.0 if "var" in name or "norm" in name else 0.0)
    return frozen_on(module, device, dtype)


def build_random_pipeline(device: str, size: str, dtype: torch.dtype) -> MotionPipeline:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    dev = torch.device(device)
    full = size == "full"
    unet_cfg = {} if full else TINY_UNET
    control_cfg = {k: v for k, v in unet_cfg.items() if k != "num_frames"}
    cmp = _random(lambda: CMP(CMPConfig() if full else TINY_CMP), dev, torch.float32)
    return MotionPipeline(
        unet=_random(lambda: MofaSVDUNet(**unet_cfg), dev, dtype),
        vae=_random(lambda: AutoencoderKLTemporalDecoder(**(FULL_VAE if full else TINY_VAE)), dev, dtype),
        image_encoder=_random(lambda: CLIPVisionModelWithProjection(
            CLIPVisionConfig(**(FULL_CLIP if full else TINY_CLIP))), dev, dtype),
        scheduler=EulerDiscreteScheduler.from_config(SVD_SCHEDULER),
        controlnet=_random(lambda: FlowControlNet(**control_cfg), dev, dtype),
        cmp=cmp, device=dev, dtype=dtype)


def bench(device: str, size: str = "full", frames: int = 25, steps: int = 25, dtype: str | None = None,
          offload: str = "none") -> dict:
    """Seconds per denoising step, seconds per video, peak memory; 512x512 (full) or 64x64 (tiny).

    dtype: a torch dtype name; default float16 on CUDA, float32 elsewhere."""
    if size not in ("full", "tiny"):
        raise ValueError("size must be 'full' or 'tiny'")
    dtype = getattr(torch, dtype) if dtype else (torch.float16 if torch.device(device).type == "cuda" else torch.float32)
    pipeline = build_random_pipeline(device, size, dtype)
    if offload != "none":
        pipeline.enable_model_offload()
    side = 512 if size == "full" else 64
    image = (np.random.RandomState(0).rand(side, side, 3) * 255).astype(np.uint8)
    inputs = {"image": image, "trajectories": [[[side * 0.3, side * 0.3], [side * 0.6, side * 0.5]]]}
    options = {"frames": frames, "steps": steps, "size": side}
    stamps: list[float] = []
    if torch.cuda.is_available() and torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipeline(inputs, options, progress=lambda f, m: stamps.append(time.perf_counter()) if m.startswith("Denois") else None)
    total = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1) if len(stamps) > 1 else stamps[0] - start
    if torch.device(device).type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
        label = "peak_gpu_gib"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        label = "peak_rss_gib"
    return {"device": device, "size": size, "resolution": f"{side}x{side}x{frames}", "steps": steps,
            "dtype": str(dtype), "offload": offload, "s_per_step": round(per_step, 4), "s_per_video": round(total, 3),
            label: round(peak, 3)}
