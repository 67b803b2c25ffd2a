"""SV4D (1.0) video-to-4D: 21 prepared frames of an object -> the same frames seen from 8 new viewpoints.

As scripts/sampling/simple_video_sample_4d.py with scripts/demo/sv4d_helpers.py@0ad7de9a5cb5
(Stability-AI/generative-models) runs it, with T = 5 frames x V = 8 views per sample and 20 steps:
1. SV3D_u makes the 21-view orbit of frame 0 (20 steps, cond_aug 1e-5, its triangle guidance; the decoded views
   clamped to [-1, 1], the last replaced by frame 0); rolled by one so the input comes first, and the views
   [0, 2, 5, 7, 9, 12, 14, 16, 19] of that orbit are frame 0's 9 views.
2. Anchor frames [4, 8, 12, 16, 20]: one sample conditioned on those input frames and on frame 0's 8 new views.
3. Dense windows t0 = 0, 4, 8, 12, 16 (frames t0..t0+4): fresh noise for a whole 21 x 9 latent matrix, conditioning
   prepared twice (forward: frames in order, the views of frame t0; backward: frames reversed, the views of frame
   t0+4), then each Euler step takes the backward conditioning on even steps and the forward one on odd steps, over
   the latents of the window's frames in that order; then every frame of the window is decoded (one image at a
   time), replacing what the anchors or the previous window gave.
Cameras: elevation for all 21 SV3D views (default 10), azimuths linspace(0, 360, 22)[1:] made relative to the last;
the 8 new views' polar angles are absolute (90 - elevation) and their azimuths relative to view 0 of that list.
Guidance: SpatiotemporalPredictionGuider (guider 5) with cfg 2.0 and min 1.0 over the 5 x 8 slots; sigma 700 -> 0.002.
Random numbers: one CPU generator seeded with `seed`, drawn in the script's order (SV3D's cond noise and latents; the
anchor sample's two conditioner passes and its latents; per dense window the 21 x 9 latents, then the forward and
backward conditioning's passes). The original seeds before building its models (random initialisation advances its
stream), so a seed does not reproduce its exact picture; with the same noise the numbers match.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError
from engine.pipelines.base import CancelToken, Progress, no_progress
from engine.tasks import Options

from .conditioner import Conditioner
from .pipeline import N_FRAMES, FourDPipeline, FourDResult
from .sampler import Guidance, edm_sigmas, euler_sample, euler_step, guidance_scales
from .sv3d import N_VIEWS, default_azimuths
from .sv3d_pipeline import SV3DPipeline

STEPS = 20  # num_steps
SUBSAMPLED_VIEWS = (0, 2, 5, 7, 9, 12, 14, 16, 19)  # of the rolled SV3D orbit: view 0 = the input
ANCHORS = (4, 8, 12, 16, 20)  # np.arange(T - 1, n_frames, T - 1)
WINDOW_STARTS = (0, 4, 8, 12, 16)  # np.arange(0, n_frames - 1, T - 1)
GUIDANCE = Guidance("spatiotemporal", 2.0, 1.0)  # guider 5, cfg 2.0, min_cfg default 1.0
FRAME_RATIO = 0.917  # image_frame_ratio
ORBIT_MODEL = "sv3d_u"  # sv3d_version


def sv4d_cameras(elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(polars, azimuths) in radians of the 8 new views as the script computes them, and their azimuths in degrees
    relative to the input view."""
    azimuths_deg = default_azimuths()
    polars_rad = np.array([np.deg2rad(90 - e) for e in [elevation] * N_VIEWS])
    azimuths_rad = np.array([np.deg2rad((a - azimuths_deg[-1]) % 360) for a in azimuths_deg])
    new = list(SUBSAMPLED_VIEWS[1:])
    polars = polars_rad[new]
    azims = (azimuths_rad[new] - azimuths_rad[0]) % (torch.pi * 2)
    return polars, azims, np.rad2deg(azims)


class SV4DPipeline(FourDPipeline):
    """SV4D's networks (the SV4D 2.0 classes with SV4D's config) and an SV3D_u pipeline for the reference orbit."""

    orbit_pipeline: SV3DPipeline

    @classmethod
    def load_both(cls, paths: Mapping[str, Any], device: Any, dtype: Any, offload: str,
                  networks: Any) -> "SV4DPipeline":
        if ORBIT_MODEL not in paths:
            raise CheckpointError(f"SV4D needs the {ORBIT_MODEL} checkpoint too (its orbit of the first frame).")
        pipeline = cls("sv4d", paths["sv4d"], device, dtype, networks)
        pipeline.orbit_pipeline = SV3DPipeline(ORBIT_MODEL, paths[ORBIT_MODEL], device, dtype, networks)
        for part in (pipeline, pipeline.orbit_pipeline):
            if not part.file.is_file():
                raise CheckpointError(f"{part.file} is missing; download the '{part.model}' checkpoint again.")
            part.with_offload(offload, networks)
        return pipeline

    def networks(self) -> dict[str, nn.Module]:
        own = self.built().named()
        return {**own, **{f"sv3d_{name}": net for name, net in self.orbit_pipeline.networks().items()}}

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> FourDResult:
        self.check_options(opts)
        cancel = cancel or CancelToken()
        frames = self._frames(inputs.get("frames"), opts.size)
        steps = opts.steps or STEPS
        self.use_config(inputs.get("model_config"))
        generator = torch.Generator().manual_seed(opts.seed)
        polars, azims, azimuths_deg = sv4d_cameras(opts.elevation)

        def stage(start: float, end: float, name: str) -> Progress:
            return lambda f, message: progress(start + (end - start) * f, f"{name}: {message}")

        orbit = self.orbit_pipeline.orbit(frames[:1], polars, azims, steps, generator, opts.decode_chunk,
                                          stage(0.0, 0.15, "Orbit of frame 0 (SV3D_u)"), cancel)
        orbit = torch.roll(torch.clamp(orbit, min=-1.0, max=1.0), 1, 0)
        images: dict[tuple[int, int], torch.Tensor] = {(0, i): orbit[v] for i, v in enumerate(SUBSAMPLED_VIEWS)}
        images |= {(t, 0): frames[t] for t in range(N_FRAMES)}
        nets = self.built()
        conditioner = Conditioner(self.config, nets.clip, nets.frames_encoder, nets.view_encoder, self._stage,
                                  self.device)
        scales = guidance_scales(GUIDANCE, self.config.n_time, self.config.n_view)
        new_views = range(1, self.config.n_view + 1)

        def condition(order: list[int], view_frame: int) -> Any:
            """The denoiser for these input frames, conditioned on the new views of `view_frame`."""
            views = torch.stack([images[view_frame, v] for v in new_views])
            cond, uncond = conditioner(frames[order], views, polars, azims, generator, opts.encode_chunk,
                                       cancel.check)
            return self._denoiser(nets.unet, cond, uncond, scales)

        report = stage(0.15, 0.3, "Anchor frames")
        report(0.0, "conditioning")
        denoise = condition(list(ANCHORS), 0)
        noise = torch.randn((len(ANCHORS) * self.config.n_view, 4, opts.size // 8, opts.size // 8),
                            generator=generator)

        def anchor_step(i: int) -> None:
            cancel.check()
            report(0.1 + 0.8 * (i + 1) / steps, f"denoising step {i + 1}/{steps}")

        with self._stage(nets.unet):
            latents = euler_sample(denoise, noise, steps, anchor_step)
        report(0.9, "decoding")
        decoded = self._decode(nets.decoder, latents, opts.decode_chunk, cancel) * 2 - 1
        for i, t in enumerate(ANCHORS):
            for j, v in enumerate(new_views):
                images[t, v] = decoded[i * len(new_views) + j]

        for w, t0 in enumerate(WINDOW_STARTS):
            report = stage(0.3 + 0.7 * w / len(WINDOW_STARTS), 0.3 + 0.7 * (w + 1) / len(WINDOW_STARTS),
                           f"Window {w + 1}/{len(WINDOW_STARTS)}")
            self._dense_window(t0, images, frames, condition, steps, opts, report, cancel, generator)
        progress(1.0, "Done")
        views = np.stack([np.stack([((images[t, v] + 1) / 2 * 255).permute(1, 2, 0).numpy().astype(np.uint8)
                                    for t in range(N_FRAMES)]) for v in new_views])
        return FourDResult(views, tuple(float(a) for a in azimuths_deg), float(opts.elevation))

    def _dense_window(self, t0: int, images: dict[tuple[int, int], torch.Tensor], frames: torch.Tensor,
                      condition: Any, steps: int, opts: Options, report: Progress, cancel: CancelToken,
                      generator: torch.Generator) -> None:
        """Frames t0..t0+T-1: alternating backward (even steps) / forward (odd steps) conditioning per step."""
        n_time, n_view = self.config.n_time, self.config.n_view
        size = opts.size // 8
        report(0.0, "conditioning")
        matrix = torch.randn((N_FRAMES, n_view + 1, 4, size, size), generator=generator)
        forward = list(range(t0, t0 + n_time))
        directions = {1: (forward, condition(forward, forward[0])),
                      0: (forward[::-1], condition(forward[::-1], forward[-1]))}
        sigmas = edm_sigmas(steps)
        nets = self.built()
        with self._stage(nets.unet):
            for step in range(steps):
                cancel.check()
                order, denoise = directions[step % 2]
                x = matrix[order][:, 1:].flatten(0, 1)
                if step == 0:
                    x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
                x = euler_step(denoise, x, sigmas[step], sigmas[step + 1])
                matrix[order, 1:] = x.view(n_time, n_view, *x.shape[1:])
                report(0.1 + 0.8 * (step + 1) / steps, f"denoising step {step + 1}/{steps}")
        report(0.9, "decoding")
        for t in forward:
            decoded = self._decode(nets.decoder, matrix[t, 1:], 1, cancel) * 2 - 1  # one image at a time
            for j, v in enumerate(range(1, n_view + 1)):
                images[t, v] = decoded[j]
