"""MagicAnimate inference: reference image + DensePose frames -> animated frames.

Follows the original's data flow (see shared/reference/magicanimate.md): empty prompts, DDIM 25 steps (leading,
steps_offset 1, no clipping), one noise block tiled over time, per step the appearance encoder on the clean
reference latent, the DensePose ControlNet per frame, then overlapping closed-loop windows through the UNet3D
with predictions averaged per frame, classifier-free guidance, and a frame-by-frame VAE decode.

Changes that keep the numerics: the appearance encoder runs on one copy of the reference (its two CFG copies
are identical), ControlNet residuals and the DensePose frames wait on the CPU instead of the GPU, the VAE
decodes a few frames at a time, guidance 1 skips the (then unused) unconditional half, and reference features keep the model dtype
(the original casts them to fp16 even in fp32 runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler
from einops import rearrange
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from engine import distributed, media
from engine.errors import CheckpointError, InputError
from engine.jobs import cancellable
from engine.offload import ModelOffload
from engine.pipelines.base import CancelToken, Pipeline, Progress, no_progress
from engine.runtime import ModelCache, NetworkKey, cached_network
from engine.tasks import Options
from engine.pipelines.pose.appearance import AppearanceEncoder, load_appearance_encoder
from engine.pipelines.pose.context import WindowAverage, padded_length, tiled_noise, window_schedule
from engine.pipelines.pose.motion_module import MOTION_MAX_LEN
from engine.pipelines.pose.unet3d import UNet3DConditionModel
from engine.pipelines.pose.weights import load_video_unet
from engine.weights import frozen_on, load_diffusers_model

LATENT_SCALE = 0.18215  # magicanimate/pipelines/pipeline_animation.py@d2bc3bc3c9cc (decode_latents, images2latents)
DECODE_CHUNK = 8
RESIDUAL_CACHE_BYTES = 4 * 2**30  # per-frame ControlNet residuals kept in host memory up to this size
HOST = torch.device("cpu")  # cached ControlNet residuals wait here between their computation and their windows
DENOISE_SHARE = 0.9  # progress fraction given to denoising; decoding takes the rest


def make_scheduler() -> DDIMScheduler:
    """DDIM as the original ends up configured (its pipeline forces steps_offset=1, clip_sample=False).

    Betas: noise_scheduler_kwargs in configs/inference/inference.yaml@d2bc3bc3c9cc; steps_offset / clip_sample:
    AnimationPipeline.__init__ in magicanimate/pipelines/pipeline_animation.py@d2bc3bc3c9cc."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1,
                         clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")


def _check_frame(frame: Any, what: str) -> np.ndarray:
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"{what} must be an RGB image (H x W x 3, uint8); got shape {array.shape}, "
                         f"dtype {array.dtype}.")
    return array


def prepare_inputs(inputs: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> reference (size, size, 3) uint8 resized like the original (PIL bicubic), motion (N, size, size, 3)."""
    if "reference" not in inputs or "motion" not in inputs:
        raise InputError("Give both a reference image and a DensePose motion video.")
    reference = _check_frame(inputs["reference"], "The reference image")
    if reference.shape[:2] != (size, size):
        reference = np.asarray(Image.fromarray(reference).resize((size, size), Image.BICUBIC))
    frames = list(inputs["motion"])
    if not frames:
        raise InputError("The motion video has no frames; choose a video with at least one frame.")
    motion = np.stack([_check_frame(f, f"Motion frame {i}") for i, f in enumerate(frames)])
    if motion.shape[1:3] != (size, size):
        raise InputError(f"Motion frames are {motion.shape[2]}x{motion.shape[1]} but the size option is {size}; "
                         "resize the DensePose video to size x size first.")
    return reference, motion


class PosePipeline(Pipeline):
    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, vae: AutoencoderKL,
                 controlnet: ControlNetModel, appearance: AppearanceEncoder, unet: UNet3DConditionModel,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.tokenizer, self.text_encoder, self.vae = tokenizer, text_encoder, vae
        self.controlnet, self.appearance, self.unet = controlnet, appearance, unet
        self.device, self.dtype = torch.device(device), dtype
        self.offload = ModelOffload(self.device)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: ModelCache | None = None) -> "PosePipeline":
        sd15, vae_dir, magic = (Path(paths[name]) for name in ("sd15", "sd_vae_mse", "magicanimate"))
        temporal = magic / "temporal_attention" / "temporal_attention.ckpt"
        try:
            tokenizer = CLIPTokenizer.from_pretrained(sd15 / "tokenizer")
            text_encoder = cached_network(networks, NetworkKey.of(sd15 / "text_encoder", CLIPTextModel, device, dtype),
                                          lambda: frozen_on(CLIPTextModel.from_pretrained(sd15 / "text_encoder"),
                                                            device, dtype))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"The SD1.5 tokenizer/text encoder in {sd15} could not be loaded ({err}); "
                                  "download stable-diffusion-v1-5 again.") from err
        pipeline = cls(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=load_diffusers_model(AutoencoderKL, vae_dir, device, dtype, networks=networks),
            controlnet=load_diffusers_model(ControlNetModel, magic / "densepose_controlnet", device, dtype,
                                            networks=networks),
            appearance=cached_network(networks, NetworkKey.of(magic / "appearance_encoder", AppearanceEncoder, device,
                                                              dtype),
                                      lambda: load_appearance_encoder(magic / "appearance_encoder", device, dtype)),
            unet=cached_network(networks, NetworkKey.of(temporal, UNet3DConditionModel, device, dtype),
                                lambda: load_video_unet(sd15 / "unet", temporal, device, dtype)),
            device=device, dtype=dtype,
        )
        return pipeline.with_offload(offload, networks)

    def networks(self) -> dict[str, torch.nn.Module]:
        found = {"text_encoder": self.text_encoder, "vae": self.vae, "controlnet": self.controlnet,
                 "appearance": self.appearance, "unet": self.unet}
        return {name: net for name, net in found.items() if net is not None}  # the benchmark feeds text directly

    @classmethod
    def check_options(cls, options: Options) -> None:
        if options.size % 64:
            raise InputError(f"size must be a multiple of 64 (the VAE and UNet halve it six times); got {options.size}.")
        if not options.overlap < options.context:
            raise InputError(f"overlap ({options.overlap}) must be smaller than context ({options.context}).")
        if options.context > MOTION_MAX_LEN:
            raise InputError(f"context can be at most {MOTION_MAX_LEN} frames (the temporal attention's positions).")

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options,
                 progress: Progress = no_progress, cancel: CancelToken | None = None) -> np.ndarray:
        """-> uint8 RGB frames (N, size, size, 3), N = number of motion frames.

        Each decoded chunk is rounded to uint8 at once: a long clip is held at a quarter of its float size."""
        self.check_options(opts)
        reference, motion = prepare_inputs(inputs, opts.size)
        cancel = cancel or CancelToken()
        progress(0.0, "Encoding the reference, denoising")
        count = len(motion)
        total = padded_length(count, opts.context)
        motion = np.concatenate([motion, np.repeat(motion[-1:], total - count, axis=0)])

        text = self._empty_prompt()
        ref_latent = self._encode_reference(reference)
        condition = torch.from_numpy(motion).permute(0, 3, 1, 2)  # uint8 on the host; chunks visit the device
        generator = torch.Generator(device=self.device).manual_seed(opts.seed)
        latent_hw = opts.size // 8
        latents = tiled_noise((1, 4, opts.context, latent_hw, latent_hw), total, generator, self.dtype)
        scheduler = make_scheduler()
        scheduler.set_timesteps(opts.steps, device=self.device)
        latents = latents * scheduler.init_noise_sigma
        windows = window_schedule(total, opts.context, opts.overlap)
        guided = opts.guidance > 1.0

        with cancellable(cancel, self.unet, self.controlnet):
            for step, t in enumerate(scheduler.timesteps):
                cancel.check()
                noise = self._predict_noise(latents, t, text, ref_latent, condition, windows, opts.context, guided,
                                            cancel)
                if guided:
                    uncond, cond = noise.chunk(2)
                    noise = uncond + opts.guidance * (cond - uncond)
                latents = scheduler.step(noise, t, latents, eta=0.0, generator=generator).prev_sample
                progress(DENOISE_SHARE * (step + 1) / opts.steps, f"Denoising step {step + 1}/{opts.steps}")
        return self._decode(latents[:, :, :count], progress, cancel)

    def _empty_prompt(self) -> torch.Tensor:
        """CLIP embedding of "" (the original's prompt and negative prompt), (1, 77, D)."""
        ids = self.tokenizer([""], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        with self.offload.on_device(self.text_encoder):
            return self.text_encoder(ids)[0].to(self.dtype)

    def _encode_reference(self, image: np.ndarray) -> torch.Tensor:
        pixels = torch.tensor(image).to(self.device, self.dtype).permute(2, 0, 1)[None] / 127.5 - 1
        with self.offload.on_device(self.vae):
            return self.vae.encode(pixels).latent_dist.mean * LATENT_SCALE

    def _predict_noise(self, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor, ref_latent: torch.Tensor,
                       condition: torch.Tensor, windows: Sequence[list[int]], context: int,
                       guided: bool, cancel: CancelToken | None = None) -> torch.Tensor:
        """Window-averaged noise prediction, (2 if guided else 1, 4, frames, h, w); uncond first. Stop is honoured
        before every ControlNet chunk and every window (a step of a long clip takes minutes on a CPU).

        ControlNet residuals depend only on a frame's own latent, so they are computed once per frame and kept
        in host memory while that fits in RESIDUAL_CACHE_BYTES; longer clips recompute them per window instead
        (about a third more ControlNet work, constant memory).

        In a job divided among devices (engine.distributed) this rank runs only its share of the windows and the
        ControlNet on the frames those windows need; the per-frame sums and counts are then added over all ranks."""
        cancel = cancel or CancelToken()
        with self.offload.on_device(self.appearance):
            reference = [feature[0] for feature in self.appearance(ref_latent, t, text)]
        windows = distributed.my_share(windows)
        needed = sorted({frame for window in windows for frame in window})
        cached = len(needed) * self._residual_bytes_per_frame(latents) <= RESIDUAL_CACHE_BYTES
        if cached and needed:
            with self.offload.on_device(self.controlnet):
                chunks = []
                for start in range(0, len(needed), context):
                    cancel.check()
                    chunks.append(self._controlnet(latents, t, text, condition, needed[start:start + context], HOST))
            residuals = [torch.cat(parts) for parts in zip(*chunks)]
            row = torch.zeros(latents.shape[2], dtype=torch.long)
            row[needed] = torch.arange(len(needed))  # frame -> its row in the residuals
        halves = 2 if guided else 1
        average = WindowAverage(latents.repeat(halves, 1, 1, 1, 1))
        with self.offload.on_device(self.unet, *(() if cached else (self.controlnet,))):
            for window in windows:
                cancel.check()
                sample = latents[:, :, window].repeat(halves, 1, 1, 1, 1)
                per_frame = ([r[row[window]].to(self.device) for r in residuals] if cached
                             else self._controlnet(latents, t, text, condition, window, self.device))
                laid = [rearrange(r, "f c h w -> 1 c f h w").repeat(halves, 1, 1, 1, 1) for r in per_frame]
                with self.unet.reading_reference(reference, batch=[halves - 1]):
                    average.add(window, self.unet(sample, t, text, laid[:-1], laid[-1]))
        distributed.all_sum(average.total, average.count)
        return average.mean()

    def _controlnet(self, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor, condition: torch.Tensor,
                    frames: list[int], keep_on: torch.device) -> list[torch.Tensor]:
        """DensePose ControlNet on `frames` as one batch -> its residuals (down blocks..., mid), (f, C, h, w) each.

        condition: (frames, 3, H, W) uint8 DensePose pixels on the host."""
        index = torch.tensor(frames)
        sample = rearrange(latents[0][:, index.to(latents.device)], "c f h w -> f c h w")
        pixels = condition[index].to(self.device, self.dtype) / 255.0
        down, mid = self.controlnet(sample, t, encoder_hidden_states=text.expand(len(frames), -1, -1),
                                    controlnet_cond=pixels, return_dict=False)
        return [r.to(keep_on) for r in (*down, mid)]

    def _residual_bytes_per_frame(self, latents: torch.Tensor) -> int:
        """Host bytes of one frame's ControlNet residuals: conv_in, each resnet and downsampler output, mid block."""
        config = self.controlnet.config
        pixels, channels = latents.shape[-2] * latents.shape[-1], list(config.block_out_channels)
        elements = channels[0] * pixels
        for level, width in enumerate(channels):
            elements += config.layers_per_block * width * pixels // 4 ** level
            if level + 1 < len(channels):
                elements += width * pixels // 4 ** (level + 1)
        elements += channels[-1] * pixels // 4 ** (len(channels) - 1)
        return elements * latents.element_size()

    def _decode(self, latents: torch.Tensor, progress: Progress, cancel: CancelToken) -> np.ndarray:
        frames = rearrange(latents[0], "c f h w -> f c h w") / LATENT_SCALE
        out = []
        with self.offload.on_device(self.vae):
            for start in range(0, frames.shape[0], DECODE_CHUNK):
                cancel.check()
                image = self.vae.decode(frames[start:start + DECODE_CHUNK]).sample
                out.append(media.to_uint8(rearrange(image / 2 + 0.5, "f c h w -> f h w c").float().cpu().numpy()))
                done = min(start + DECODE_CHUNK, frames.shape[0]) / frames.shape[0]
                progress(DENOISE_SHARE + (1 - DENOISE_SHARE) * done, "Decoding frames")
        return np.concatenate(out)


PIPELINE = PosePipeline
