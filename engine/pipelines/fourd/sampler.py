"""SV4D 2.0 sampling pieces: the window schedule, the cameras, the guidance scale per (frame, view) slot, the EDM
sigmas, the v-scaling denoiser and the Euler steps.

Numbers from Stability-AI/generative-models@0ad7de9a5cb5: scripts/sampling/simple_video_sample_4d2.py (windows,
azimuths, cfg 2.0 / 2.5 with min_cfg 1.5, sigma 0.002..700 rho 7, guider 2 = Linear for 4 views and 5 =
Spatiotemporal for 8 views), sgm/modules/diffusionmodules/{guiders,discretizer,denoiser_scaling,sampling}.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from engine.errors import InputError

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 700.0, 7.0
# The input view's azimuth comes first; the generated views follow (degrees).
AZIMUTHS = {"sv4d2": (0, 60, 120, 180, 240), "sv4d2_8views": (0, 30, 75, 120, 165, 210, 255, 300, 330)}


@dataclass(frozen=True)
class Guidance:
    """LinearPredictionGuider (kind "linear": min -> max over the t*v slots), SpatiotemporalPredictionGuider
    (kind "spatiotemporal": 0.5 * linspace over frames + 0.5 * triangle over views, scaled to min..max) or
    TrianglePredictionGuider (kind "triangle", period 1, SV3D: min -> max -> min over the slots)."""

    kind: str
    max_scale: float
    min_scale: float = 1.0


# sv4d2: guider 2 with cfg 2.0 (min_cfg is not passed to the Linear guider, so its minimum is 1.0);
# sv4d2_8views: guider 5 with cfg 2.5, min_cfg 1.5.
GUIDANCE = {"sv4d2": Guidance("linear", 2.0), "sv4d2_8views": Guidance("spatiotemporal", 2.5, 1.5)}


def windows(model: str, n_frames: int, n_time: int) -> list[int]:
    """First frame of each window. 4-view: range(0, n, T) with the last window moved back to end at n (21 frames,
    T=12: [0, 9]); 8-view: range(0, n-T+1, T-1), overlapping by one frame (T=5: [0, 4, 8, 12, 16])."""
    if model == "sv4d2_8views":
        starts = range(0, n_frames - n_time + 1, n_time - 1) if n_time > 1 else range(n_frames)
    else:
        starts = range(0, n_frames, n_time)
    return [min(t0, n_frames - n_time) for t0 in starts]


def camera_angles(model: str, elevation: float, n_view: int) -> tuple[np.ndarray, np.ndarray]:
    """Polar and azimuth (radians, float64) of the generated views relative to the input view, as the original
    computes them (one elevation for all views, so the relative polar is always pi/2)."""
    azimuths_deg = np.asarray(AZIMUTHS[model], dtype=np.float64)
    if len(azimuths_deg) != n_view + 1:
        raise InputError(f"{model} generates {len(azimuths_deg) - 1} views, but the model config has N_VIEW "
                         f"{n_view}; use a config of this model.")
    polars_rad = np.array([np.deg2rad(90 - elevation)] * len(azimuths_deg))
    azimuths_rad = np.array([np.deg2rad((a - azimuths_deg[-1]) % 360) for a in azimuths_deg])
    polars = (polars_rad[1:] - polars_rad[0] + np.pi / 2) % (np.pi * 2)
    azims = (azimuths_rad[1:] - azimuths_rad[0]) % (np.pi * 2)
    return polars, azims


def guidance_scales(guidance: Guidance, n_time: int, n_view: int) -> torch.Tensor:
    """[t * v] scales in (frame, view) order."""
    slots = n_time * n_view
    if guidance.kind == "linear":
        return torch.linspace(guidance.min_scale, guidance.max_scale, slots)
    if guidance.kind == "triangle":
        return triangle_wave(torch.linspace(0, 1, slots)) * (guidance.max_scale - guidance.min_scale) + \
            guidance.min_scale
    scale = torch.zeros(slots).view(n_time, n_view)
    scale += torch.linspace(0, 1, n_time)[:, None] * 0.5
    scale += triangle_wave(torch.linspace(0, 1, n_view))[None, :] * 0.5
    return scale.flatten() * (guidance.max_scale - guidance.min_scale) + guidance.min_scale


def triangle_wave(values: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    return 2 * (values / period - torch.floor(values / period + 0.5)).abs()


def edm_sigmas(steps: int) -> torch.Tensor:
    """EDMDiscretization(0.002, 700, rho 7) with a final 0: [steps + 1]."""
    ramp = torch.linspace(0, 1, steps)
    min_inv, max_inv = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** RHO
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def v_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """VScalingWithEDMcNoise: c_skip, c_out, c_in, c_noise."""
    return (1.0 / (sigma ** 2 + 1.0), -sigma / (sigma ** 2 + 1.0) ** 0.5, 1.0 / (sigma ** 2 + 1.0) ** 0.5,
            0.25 * sigma.log())


Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""denoise(x, sigma) -> the guided prediction of the clean latents, both [N, C, h, w] float32."""


def euler_step(denoise: Denoise, x: torch.Tensor, sigma: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
    """One EulerEDMSampler step without churn: x + (sigma' - sigma) (x - D(x, sigma)) / sigma."""
    return x + (following - sigma) * ((x - denoise(x, sigma)) / sigma)


def euler_sample(denoise: Denoise, noise: torch.Tensor, steps: int,
                 on_step: Callable[[int], None] = lambda i: None) -> torch.Tensor:
    """EulerEDMSampler without churn: x = noise * sqrt(1 + sigma0^2), then `steps` Euler steps."""
    sigmas = edm_sigmas(steps)
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    for i in range(steps):
        x = euler_step(denoise, x, sigmas[i], sigmas[i + 1])
        on_step(i)
    return x


def sample_reporting(denoise: Denoise, noise: torch.Tensor, steps: int, report: Callable[[float, str], None],
                     check: Callable[[], None], label: str) -> torch.Tensor:
    """euler_sample that honours Stop before every step and reports "<label> i/steps" from 0.05 to 0.9 of `report`
    (the benchmarks time the steps by these messages)."""
    def step(i: int) -> None:
        check()
        report(0.05 + 0.85 * (i + 1) / steps, f"{label} {i + 1}/{steps}")

    report(0.05, f"{label} 0/{steps}")
    check()
    return euler_sample(denoise, noise, steps, step)


Network = Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]
"""network(model_in, c_noise, batch) -> the raw output; `batch` holds the CFG batch's other inputs (uncond first)."""


def cfg_denoiser(network: Network, cond: Mapping[str, torch.Tensor], uncond: Mapping[str, torch.Tensor],
                 scales: torch.Tensor, device: torch.device, dtype: torch.dtype) -> Denoise:
    """D(x, sigma) with v-scaling, the CFG batch (uncond first, as the guiders' prepare_inputs), the noisy latents
    scaled by c_in and concatenated with `concat` along channels, and one guidance scale per latent."""
    both = {name: torch.cat([uncond[name], cond[name]]).to(device) for name in cond}
    scale = scales.view(-1, 1, 1, 1).to(device)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = v_scalings(sigma)
        doubled = torch.cat([x, x]).to(device)
        model_in = torch.cat([doubled * c_in, both["concat"]], dim=1)
        out = network(model_in.to(dtype), c_noise.expand(len(doubled)).to(device), both).float()
        denoised = out * c_out + doubled * c_skip
        uncond_x, cond_x = denoised.chunk(2)
        return (uncond_x + scale * (cond_x - uncond_x)).cpu()

    return denoise
