"""MOFA-Video trajectory animation: image + drawn trajectories (+ motion brush) -> 25-frame video.

Numerics follow the Traj demo: the motion field comes from CMP at 384x384, then SVD-XT-1.1 samples
with the flow ControlNet (scale 0.6), Euler with SVD's scheduler config, always-on CFG (zero CLIP
embedding and zero image latents for the unconditional half) and per-frame guidance linspace(1, 3).
Time ids are fixed to [fps 6, motion bucket 128, noise aug 0.02] whatever the UI says (quirk 3), and
CLIP sees the [0,1] image resized to 224 without CLIP normalisation (quirk 4; training normalised it).
The temporal cross-attention uses diffusers 0.24's batch-interleaved context order, as the demo did
(see time_context.py; the option `demo_context_order=False` gives the corrected order of diffusers >= 0.27).
Numbers from MOFA-Video-Traj/run_gradio.py@3ad3b546da4c and MOFA-Video-Traj/pipeline/pipeline.py@3ad3b546da4c.

Seeds: the initial latents come from a generator on the pipeline's device seeded with `seed` (on CUDA
this equals the demo's `set_seed(42)` global CUDA stream); the noise-augmentation noise comes from a
separate CPU generator with the same seed (the demo drew it from the global CPU stream). On CPU the
latents therefore differ from a CUDA run with the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from torch import nn

from engine.errors import CheckpointError, InputError
from engine.offload import ModelOffload
from engine.pipelines.base import CancelToken, Pipeline, Progress, no_progress
from engine.runtime import ModelCache
from engine.tasks import Options

from engine.models.mofa import flows
from engine.models.mofa.cmp import CMP, CMP_CHECKPOINT, CMP_CONFIG, load_repo_cmp  # noqa: F401 (re-exported)
from engine.models.mofa.controlnet import FlowControlNet
from engine.models.mofa.sampling import SVDSampler, denoise, load_svd
from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.weights import load_diffusers_model

SVD_KEY, TRAJ_KEY = "svd_xt_11", "mofa_traj"
CONTROLNET_DIR = "ckpts/controlnet"
OPENAI_CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@dataclass(frozen=True)
class MotionResult:
    frames: np.ndarray  # [F, H, W, 3] float in [0, 1]
    flow_frames: np.ndarray  # [F, H, W, 3] uint8, the motion field colour-coded (white for frame 0)
    hint: np.ndarray  # [H, W, 3] uint8, the picture with the drawings


class MotionPipeline(Pipeline):
    """SVD-XT-1.1 + MOFA trajectory ControlNet + CMP (the face task borrows its adapter for hybrid trajectories)."""

    def __init__(self, unet: MofaSVDUNet, vae: AutoencoderKLTemporalDecoder, image_encoder: nn.Module,
                 scheduler: EulerDiscreteScheduler, controlnet: FlowControlNet, cmp: CMP,
                 device: torch.device | str, dtype: torch.dtype) -> None:
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.controlnet, self.cmp = controlnet, cmp
        self.device, self.dtype = torch.device(device), dtype
        self.offload = ModelOffload(self.device)
        self.svd = SVDSampler(unet, vae, image_encoder, scheduler.config, self.device, dtype, self.offload)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: ModelCache | None = None) -> "MotionPipeline":
        missing = {SVD_KEY, TRAJ_KEY} - set(paths)
        if missing:
            raise CheckpointError(f"Motion needs the checkpoints {sorted(missing)}; download them first.")
        svd, traj = Path(paths[SVD_KEY]), Path(paths[TRAJ_KEY])
        pipeline = cls(
            **load_svd(svd, SVD_KEY, device, dtype, networks),
            controlnet=load_diffusers_model(FlowControlNet, traj / CONTROLNET_DIR, device, dtype, networks=networks),
            cmp=load_repo_cmp(traj, device, TRAJ_KEY, networks),
            device=device, dtype=dtype)
        return pipeline.with_offload(offload, networks)

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "image_encoder": self.image_encoder,
                "controlnet": self.controlnet, "cmp": self.cmp}

    @classmethod
    def check_options(cls, options: Options) -> None:
        if options.size % 64:
            raise InputError(f"size must be a multiple of 64 (the SVD UNet halves the latents three times); "
                             f"got {options.size}.")

    # ----- inputs and motion field ----------------------------------------------------------------
    def _prepare(self, inputs: Mapping[str, Any], size: int) -> tuple[np.ndarray, list, np.ndarray | None]:
        image = inputs.get("image")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("The image must be an RGB picture (H x W x 3, uint8); convert it to RGB and retry.")
        if min(image.shape[:2]) < 16:
            raise InputError(f"The image is too small ({image.shape[1]}x{image.shape[0]}); use at least 64 pixels.")
        brush = inputs.get("brush")
        if brush is not None:
            brush = np.asarray(brush)
            if brush.shape != image.shape[:2]:
                raise InputError(f"The motion brush mask is {brush.shape} but the image is {image.shape[:2]}; "
                                 "paint the brush on the same image.")
        prepared, transform = flows.prepare_image(image, size)
        trajectories = inputs.get("trajectories") or []
        if prepared.shape != image.shape:
            trajectories = flows.transform_points(trajectories, transform)
            if brush is not None:
                brush = flows.transform_mask(brush.astype(np.uint8), transform, prepared.shape[1::-1])
        return prepared, trajectories, brush

    def _cmp_flow(self, frame: torch.Tensor, tracks: np.ndarray, brush_square: np.ndarray | None,
                  height: int, width: int) -> torch.Tensor:
        """One CMP pass over all frames of a track set -> [T, 2, H, W] in the working dtype."""
        size = self.cmp.cfg.size
        sparse, mask = flows.sparse_hints(tracks, size)
        sparse = torch.from_numpy(sparse).permute(0, 3, 1, 2).to(self.device, self.dtype)
        mask = torch.from_numpy(mask)[:, None].repeat(1, 2, 1, 1).to(self.device, self.dtype)
        with self.offload.on_device(self.cmp):
            flow = self.cmp(frame.expand(len(sparse), -1, -1, -1), sparse, mask).to(self.dtype)
        if brush_square is not None:
            flow = flow * torch.from_numpy(brush_square / 255.0).to(self.device, self.dtype)
        return flows.upscale_flow(flow, height, width)

    def motion_field(self, image: np.ndarray, trajectories: list, brush: np.ndarray | None,
                     frames: int) -> torch.Tensor:
        """Prepared image + trajectories in its pixels -> flow [frames-1, 2, H, W] (frame 0 -> t)."""
        height, width = image.shape[:2]
        size = self.cmp.cfg.size
        tracks = flows.tracks_in_square(flows.validate_trajectories(trajectories, width, height),
                                        width, height, size, frames)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
        # The demo casts the 384 frame (nearest-resized) to the working dtype before CMP.
        frame = torch.nn.functional.interpolate(pixels, (size, size)).to(self.device, self.dtype)
        brush_square = flows.brush_in_square(brush, size) if brush is not None else np.zeros((size, size))
        inside, outside = flows.split_by_brush(tracks, brush_square)
        zeros = torch.zeros(frames - 1, 2, height, width, device=self.device, dtype=self.dtype)
        flow_in = self._cmp_flow(frame, inside, brush_square, height, width) if len(inside) else zeros
        flow_out = self._cmp_flow(frame, outside, None, height, width) if len(outside) else zeros
        return flows.merge_brush_flows(flow_in, flow_out)

    @torch.no_grad()
    def preview_flow(self, image: np.ndarray, trajectories: list, brush: np.ndarray | None = None,
                     size: int = 512) -> np.ndarray:
        """Live preview: colour image of the last frame's flow (white while a trajectory is unfinished)."""
        prepared, points, brush = self._prepare({"image": image, "trajectories": trajectories, "brush": brush}, size)
        if not points or len(points[-1]) < 2:
            return np.full_like(prepared, 255)
        # 25 = the demo's model_length (MOFA-Video-Traj/run_gradio.py@3ad3b546da4c)
        return flows.flow_to_rgb(self.motion_field(prepared, points, brush, 25)[-1].permute(1, 2, 0))

    # ----- diffusion ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, image: np.ndarray, flow: torch.Tensor, opts: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> torch.Tensor:
        """Prepared image [H,W,3] uint8 + flow [F-1,2,H,W] -> frames [F,H,W,3] float in [0,1]."""
        cancel = cancel or CancelToken()
        height, width = image.shape[:2]
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
        cond = self.svd.encode_condition(pixels, opts.seed)
        scheduler = self.svd.scheduler(opts.steps)
        latents = self.svd.initial_latents(opts.frames, height, width, opts.seed, scheduler)
        flow = flow[None].repeat(2, 1, 1, 1, 1).to(self.device, self.dtype)

        def residuals(model_in: torch.Tensor, t: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            return self.controlnet(model_in, t, cond.context, self.svd.time_ids(), cond.pixels, flow, opts.scale)

        def step(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            prediction = self.svd.predict(latents, t, scheduler, cond, residuals, cancel)
            return scheduler.step(prediction, t, latents).prev_sample

        with self.svd.denoising([self.controlnet], opts.demo_context_order, cancel):
            latents = denoise(scheduler, latents, step, progress, cancel)
        progress(0.9, "Decoding frames")
        video = self.svd.decode(latents, opts.decode_chunk, cancel)
        progress(1.0, "Done")
        return video

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> MotionResult:
        self.check_options(opts)
        cancel = cancel or CancelToken()
        image, trajectories, brush = self._prepare(inputs, opts.size)
        flow = self.motion_field(image, trajectories, brush, opts.frames)
        progress(0.05, "Motion field ready")
        cancel.check()
        video = self.generate(image, flow, opts, progress, cancel)
        white = np.full_like(image, 255)
        flow_frames = np.stack([white] + [flows.flow_to_rgb(f.permute(1, 2, 0)) for f in flow])
        return MotionResult(video.numpy(), flow_frames, draw_hint(image, trajectories, brush))


def draw_hint(image: np.ndarray, trajectories: list, brush: np.ndarray | None) -> np.ndarray:
    """The picture dimmed, the brush in blue, trajectories as red polylines ending in an arrow.

    16 points, red, width 2: visualize_drag_v2 in MOFA-Video-Traj/run_gradio.py@3ad3b546da4c; the dimming, the blue
    blend and tipLength 0.5 are ours (the demo composites RGBA layers and uses tipLength=8/arrow_length)."""
    canvas = (image.astype(np.float32) * 0.5 + 127.5)
    if brush is not None:
        painted = np.asarray(brush) > 0
        canvas[painted] = canvas[painted] * 0.5 + np.array([0, 0, 255], np.float32) * 0.5
    canvas = canvas.astype(np.uint8)
    for track in trajectories:
        points = np.round(flows.resample_track(np.asarray(track, np.float64), 16)).astype(np.int32)
        cv2.polylines(canvas, [points[:-1]], False, (255, 0, 0), 2)
        cv2.arrowedLine(canvas, tuple(map(int, points[-2])), tuple(map(int, points[-1])), (255, 0, 0), 2,
                        tipLength=0.5)
    return canvas


PIPELINE = MotionPipeline
