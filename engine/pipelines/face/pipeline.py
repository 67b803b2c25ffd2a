"""MOFA-Video faces: a portrait + a landmark sequence (+ optional trajectories) -> a video of any length.

Keypoint path (MOFA-Video-Keypoint/mofa_keypoint.py and pipeline/svdxt_pipeline_ctrlnet_loop.py@3ad3b546da4c):
- the portrait is resized so its short side is `size` and centre-cropped to multiples of 64 (as the trajectory task;
  the Keypoint script's own LANCZOS resize is left to the user's upload), landmarks follow the same transform;
- pose images: each frame's 68 points scaled to 320x320, drawn by `drawing.draw_pose_image`, resized bilinearly to
  the working size (INTER_NEAREST sits in cv2.resize's `dst` slot in the original), in [0, 1];
- motion field: sparse hints at the landmarks (flows.landmark_hints) through CMP on the nearest-resized 384 frame,
  per frame in float32, nearest-upsampled and rescaled to the working size;
- SVD-XT with the landmark ControlNet (scale 1.0), periodic sampling in windows of 25 (windows.py), per-window
  guidance linspace(1, 3, window length).
Landmark geometry is computed in float32 whatever the working dtype (the published fp16 run cast landmarks to fp16
first; bf16 would move points by several pixels).

Hybrid (MOFA-Video-Hybrid/pipeline/pipeline.py and run_gradio_video_driven.py@3ad3b546da4c), when trajectories are
given: the trajectory adapter and CMP of the Trajectories task (`with_trajectory_adapter`) make the drag flow exactly
as that task does (25 points, 24 flows, tiled over longer videos as the Hybrid code tiles them); every step both
ControlNets run on the same input and their residuals are blended face * M + drag * (1 - M) (M the landmark mask / 255,
nearest-resized to each residual), drag scale 0.6.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from torch import nn

from engine import media
from engine.errors import CheckpointError, InputError
from engine.models.mofa import flows
from engine.models.mofa.cmp import CMP, load_repo_cmp
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.models.mofa.sampling import Condition, SVDSampler, denoise, load_svd
from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.offload import ModelOffload
from engine.pipelines.base import CancelToken, Pipeline, Progress, no_progress
from engine.runtime import ModelCache
from engine.tasks import Options
from engine.weights import load_diffusers_model

from .drawing import POSE_SIZE, draw_pose_image
from .speech import SpeechRenderer
from .windows import Window, periodic_windows, step_windows

SVD_KEY, LDMK_KEY = "svd_xt_11", "mofa_ldmk"
LDMK_DIR = "ckpts/mofa/ldmk_controlnet"  # MyNiuuu/MOFA-Video-Hybrid (init_models in run_gradio_video_driven.py)
TRAJECTORY_POINTS = 25  # the Hybrid demo's model_length: trajectories are resampled to 25 points, 24 flows
CMP_CHUNK = 8  # frames per CMP pass (the original runs one at a time; a whole long clip at once would not fit)
LANDMARKS = 68


@dataclass(frozen=True)
class FaceResult:
    frames: np.ndarray  # [N, h, w, 3] uint8 at the working size
    portrait: np.ndarray  # [h, w, 3] uint8, the resized and cropped portrait the model saw
    landmarks: np.ndarray  # [N, 68, 2] float32 in working-size pixels
    pose_frames: np.ndarray  # [N, h, w, 3] uint8, the pose images the landmark ControlNet saw


@dataclass(frozen=True)
class _Prepared:
    image: np.ndarray
    landmarks: np.ndarray
    trajectories: list | None
    mask: np.ndarray | None


class FacePipeline(Pipeline):
    """SVD-XT-1.1 + MOFA landmark ControlNet + CMP; with `with_trajectory_adapter`, hybrid trajectories too."""

    def __init__(self, unet: MofaSVDUNet, vae: AutoencoderKLTemporalDecoder, image_encoder: nn.Module,
                 scheduler: EulerDiscreteScheduler, controlnet: LandmarkControlNet, cmp: CMP,
                 device: torch.device | str, dtype: torch.dtype) -> None:
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.controlnet, self.cmp = controlnet, cmp
        self.device, self.dtype = torch.device(device), dtype
        self.offload = ModelOffload(self.device)
        self.svd = SVDSampler(unet, vae, image_encoder, scheduler.config, self.device, dtype, self.offload)
        self.trajectory: Any = None  # the Trajectories task's pipeline, for hybrid runs
        self.cache: ModelCache | None = None  # the engine's network cache (speech runs load their renderer through it)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: ModelCache | None = None) -> "FacePipeline":
        missing = {SVD_KEY, LDMK_KEY} - set(paths)
        if missing:
            raise CheckpointError(f"Talking faces need the checkpoints {sorted(missing)}; download them first.")
        svd, ldmk = Path(paths[SVD_KEY]), Path(paths[LDMK_KEY])
        pipeline = cls(
            **load_svd(svd, SVD_KEY, device, dtype, networks),
            controlnet=load_diffusers_model(LandmarkControlNet, ldmk / LDMK_DIR, device, dtype, networks=networks),
            cmp=load_repo_cmp(ldmk, device, LDMK_KEY, networks),
            device=device, dtype=dtype)
        pipeline.cache = networks
        return pipeline.with_offload(offload, networks)

    def networks(self) -> dict[str, nn.Module]:
        found = {"unet": self.unet, "vae": self.vae, "image_encoder": self.image_encoder,
                 "controlnet": self.controlnet, "cmp": self.cmp}
        if self.trajectory is not None:
            found.update(trajectory_controlnet=self.trajectory.controlnet, trajectory_cmp=self.trajectory.cmp)
        return found

    def with_trajectory_adapter(self, trajectory: Any) -> "FacePipeline":
        """Hybrid runs: borrow the Trajectories task's pipeline (its FlowControlNet and CMP, shared with that task)."""
        self.trajectory = trajectory
        return self

    def speech_renderer(self, folder: Path) -> SpeechRenderer:
        """AniPortrait's speech -> landmarks networks from the 'aniportrait' checkpoint, on this pipeline's device
        (float32), through the engine's network cache."""
        return SpeechRenderer.load(folder, self.device, self.cache)

    @classmethod
    def check_options(cls, options: Options) -> None:
        if options.size % 64:
            raise InputError(f"size must be a multiple of 64 (the SVD UNet halves the latents three times); "
                             f"got {options.size}.")

    # ----- inputs ---------------------------------------------------------------------------------
    @staticmethod
    def prepare_landmarks(landmarks: Any, transform: tuple[float, int, int]) -> np.ndarray:
        """[N, 68, 2] landmarks in portrait pixels -> float32 in working pixels (prepare_image's transform)."""
        points = np.asarray(landmarks, dtype=np.float32)
        if points.ndim != 3 or points.shape[1:] != (LANDMARKS, 2):
            raise InputError(f"Landmarks must be an array of shape [N, {LANDMARKS}, 2] ((x, y) per point and frame); "
                             f"got shape {list(points.shape)}.")
        if len(points) < 2:
            raise InputError("Landmarks need at least 2 frames (entry 0 is the portrait's own face); "
                             f"got {len(points)}.")
        if not np.isfinite(points).all():
            raise InputError("Landmarks hold NaN or infinite values; every point needs finite pixel coordinates.")
        scale, left, top = transform
        return points * np.float32(scale) - np.array([left, top], dtype=np.float32)

    def _prepare(self, inputs: Mapping[str, Any], size: int) -> _Prepared:
        image = inputs.get("image")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("The portrait must be an RGB picture (H x W x 3, uint8); convert it to RGB and retry.")
        if min(image.shape[:2]) < 16:
            raise InputError(f"The portrait is too small ({image.shape[1]}x{image.shape[0]}); use at least 64 pixels.")
        prepared, transform = flows.prepare_image(image, size)
        points = self.prepare_landmarks(inputs.get("landmarks"), transform)
        trajectories = inputs.get("trajectories") or None
        mask = None
        if trajectories:
            mask = inputs.get("mask")
            if mask is None:
                raise InputError("Hybrid runs (trajectories given) need the landmark mask: white where the face "
                                 "landmarks drive the motion.")
            mask = np.asarray(mask)
            if mask.shape != image.shape[:2]:
                raise InputError(f"The landmark mask is {mask.shape[1::-1]} but the portrait is {image.shape[1::-1]}; "
                                 "paint the mask on the portrait itself.")
            trajectories = flows.transform_points(trajectories, transform)
            mask = flows.transform_mask(mask.astype(np.uint8), transform, prepared.shape[1::-1])
        return _Prepared(prepared, points, trajectories, mask)

    # ----- conditioning ---------------------------------------------------------------------------
    @staticmethod
    def pose_images(landmarks: np.ndarray, width: int, height: int) -> torch.Tensor:
        """[N, 68, 2] working-pixel landmarks -> pose images [N, 3, H, W] float32 in [0, 1]."""
        images = [cv2.resize(draw_pose_image(_to_pose_square(points, width, height)), (width, height),
                             interpolation=cv2.INTER_LINEAR) for points in landmarks]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0

    def landmark_flow(self, image: np.ndarray, landmarks: np.ndarray, cancel: CancelToken) -> torch.Tensor:
        """Prepared portrait + working-pixel landmarks -> flow [N-1, 2, H, W] float32 on the CPU (frame 0 -> t)."""
        height, width = image.shape[:2]
        size = self.cmp.cfg.size
        sparse, mask = flows.landmark_hints(torch.from_numpy(landmarks), width, height, size)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
        frame = F.interpolate(pixels, (size, size)).to(self.device)
        pieces = []
        with self.offload.on_device(self.cmp):
            for start in range(0, len(sparse), CMP_CHUNK):
                cancel.check()
                hints = sparse[start:start + CMP_CHUNK].to(self.device)
                flow = self.cmp(frame.expand(len(hints), -1, -1, -1), hints, mask[start:start + CMP_CHUNK].to(
                    self.device))
                pieces.append(flows.upscale_flow(flow.float(), height, width).cpu())
        return torch.cat(pieces)

    def trajectory_flow(self, image: np.ndarray, trajectories: list, frames: int) -> torch.Tensor:
        """The drag flow of the Trajectories task for 25 points, tiled over `frames` - 1 flows as MOFA-Hybrid does
        (`repeat(1, len // 24 + 1)` then cut) -> [frames-1, 2, H, W] float32 on the CPU."""
        if self.trajectory is None:
            raise CheckpointError("Hybrid runs (trajectories given) need the trajectory adapter ('mofa_traj'): "
                                  "call with_trajectory_adapter with the Trajectories task's pipeline.")
        with self.offload.on_device(self.trajectory.cmp):
            drag = self.trajectory.motion_field(image, trajectories, None, TRAJECTORY_POINTS).float().cpu()
        repeats = (frames - 1) // len(drag) + 1
        return drag.repeat(repeats, 1, 1, 1)[:frames - 1]

    # ----- diffusion ------------------------------------------------------------------------------
    def _residual_fn(self, cond: Condition, window: Window, flow: torch.Tensor, pose: torch.Tensor,
                     drag: torch.Tensor | None, mask: torch.Tensor | None, opts: Options) -> Any:
        """The ControlNet residuals of one window (both adapters blended by the mask in hybrid runs)."""
        def on_device(frames: torch.Tensor) -> torch.Tensor:
            return frames[None].repeat(2, *[1] * frames.ndim).to(self.device, self.dtype)

        flow_w = on_device(window.take_flows(flow, 0))
        pose_w = on_device(window.take(pose, 0))
        drag_w = on_device(window.take_flows(drag, 0)) if drag is not None else None
        time_ids = self.svd.time_ids()

        def residuals(model_in: torch.Tensor, t: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            down, mid = self.controlnet(model_in, t, cond.context, time_ids, cond.pixels, flow_w, pose_w,
                                        opts.face_scale)
            if drag_w is None:
                return down, mid
            drag_down, drag_mid = self.trajectory.controlnet(model_in, t, cond.context, time_ids, cond.pixels,
                                                             drag_w, opts.drag_scale)
            down = [blend(face, other, mask) for face, other in zip(down, drag_down)]
            return down, blend(mid, drag_mid, mask)

        return residuals

    def generate(self, prepared: _Prepared, flow: torch.Tensor, pose: torch.Tensor, drag: torch.Tensor | None,
                 opts: Options, progress: Progress, cancel: CancelToken) -> torch.Tensor:
        """-> latents [1, N, 4, h, w] after the last step."""
        height, width = prepared.image.shape[:2]
        frames = len(prepared.landmarks)
        pixels = torch.from_numpy(prepared.image).permute(2, 0, 1)[None].float().div(255)
        cond = self.svd.encode_condition(pixels, opts.seed)
        scheduler = self.svd.scheduler(opts.steps)
        latents = self.svd.initial_latents(frames, height, width, opts.seed, scheduler)
        mask = None
        if drag is not None:
            mask = torch.from_numpy(prepared.mask).float().div(255)[None, None].to(self.device, self.dtype)
        windows = periodic_windows(frames)

        def predict(part: torch.Tensor, t: torch.Tensor, window: Window) -> torch.Tensor:
            # the window's conditions go to the device per call: all windows' at once would not fit a long video
            residuals = self._residual_fn(cond, window, flow, pose, drag, mask, opts)
            return self.svd.predict(part, t, scheduler, cond, residuals)

        def step(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return step_windows(scheduler, latents, t, windows, predict, cancel.check)

        adapters = [self.controlnet] + ([self.trajectory.controlnet] if drag is not None else [])
        with self.svd.denoising(adapters, opts.demo_context_order):
            return denoise(scheduler, latents, step, progress, cancel, span=(0.1, 0.9))

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> FaceResult:
        self.check_options(opts)
        cancel = cancel or CancelToken()
        prepared = self._prepare(inputs, opts.size)
        height, width = prepared.image.shape[:2]
        frames = len(prepared.landmarks)
        pose = self.pose_images(prepared.landmarks, width, height)
        flow = self.landmark_flow(prepared.image, prepared.landmarks, cancel)
        drag = self.trajectory_flow(prepared.image, prepared.trajectories, frames) if prepared.trajectories else None
        progress(0.1, "Motion field ready")
        latents = self.generate(prepared, flow, pose, drag, opts, progress, cancel)
        progress(0.9, "Decoding frames")
        video = self.svd.decode(latents, opts.decode_chunk, cancel)
        progress(1.0, "Done")
        return FaceResult(media.to_uint8(video.numpy()), prepared.image, prepared.landmarks,
                          media.to_uint8(pose.permute(0, 2, 3, 1).numpy()))


def _to_pose_square(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Working-pixel points -> the 320x320 drawing square, per axis (x / W * 320), in float32 as the original."""
    square = points.astype(np.float32).copy()
    square[:, 0] = square[:, 0] / width * POSE_SIZE
    square[:, 1] = square[:, 1] / height * POSE_SIZE
    return square


def blend(face: torch.Tensor, drag: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MOFA-Hybrid's residual blend: face * M + drag * (1 - M), M [1,1,H,W] nearest-resized to the residual."""
    resized = F.interpolate(mask, face.shape[-2:], mode="nearest")
    return face * resized + drag * (1 - resized)


PIPELINE = FacePipeline
