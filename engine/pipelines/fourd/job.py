"""Video to 4D job: read and check the clip (before any model loads), remove the background, frame the object, show
the processed input, run SV4D (2.0 or 1.0), write the views, grid, orbit, frames and cameras. The image models
(SV3D) take one picture instead and write the orbit, its views and (SV3D_p) its cameras."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine import media
from engine.errors import InputError
from engine.jobs import JobContext, PreviewContext
from engine.tasks import Options
from engine.pipelines.fourd import outputs
from engine.pipelines.fourd.background import MODEL_FILE, BackgroundRemover, check_object_left
from engine.pipelines.fourd.frames import CLIP_FRAMES, Clip, mask_sequence, read_clip, read_masks
from engine.pipelines.fourd.framing import FRAME_RATIO, frame_object
from engine.pipelines.fourd.spec import IMAGE_MODELS, REMBG_CHECKPOINT, VIDEO_MODELS
from engine.pipelines.fourd.sv3d import camera_path, parse_degrees
from engine.pipelines.fourd.sv3d_input import cut_out, frame_image, read_object_image

# image_frame_ratio 0.917: sample() in scripts/sampling/simple_video_sample_4d.py@0ad7de9a5cb5 (SV4D 1.0)
FRAME_RATIOS = {"sv4d": 0.917}
SIZE_MULTIPLE = 64  # the VAE's factor 8 times the UNet's three downsamplings
PREVIEW_TILE = 128


def _check_size(options: Options) -> None:
    if options.size % SIZE_MULTIPLE:
        raise InputError(f"size must be a multiple of {SIZE_MULTIPLE} (576 as trained, 512 to save memory); "
                         f"got {options.size}.")


def _read_inputs(video: Any, mask: Any, options: Options) -> tuple[Clip, list[np.ndarray] | None]:
    if not video:
        raise InputError("Add a video of the object (a video file, a GIF or a .zip of frames).")
    clip = read_clip(Path(video), options.start_frame, CLIP_FRAMES)
    masks = read_masks(Path(mask), clip) if mask else None
    if masks is not None and not any(m.any() for m in masks):
        raise InputError(f"Mask '{Path(mask).name}' is empty (all black) in every chosen frame: paint the object white.")
    if masks is None and (not options.remove_bg or all(f.shape[-1] == 4 for f in clip.frames)):
        check_object_left(clip.frames, removed=False)  # nothing will cut these frames: their object must show now
    return clip, masks


def _check_media(inputs: dict[str, Any], model: str) -> None:
    """The image models take `image`, the video models `video`: exactly the right one."""
    if model in IMAGE_MODELS:
        if inputs.get("video"):
            raise InputError(f"{model} makes a 3D orbit from one picture: give an image, not a video (the video "
                             f"models are {', '.join(VIDEO_MODELS)}).")
        if not inputs.get("image"):
            raise InputError(f"Add a picture of the object: {model} makes a 21-view orbit from one image.")
    else:
        if inputs.get("image"):
            raise InputError(f"{model} works on a video of the object: give a video, not an image (the image models "
                             f"are {', '.join(IMAGE_MODELS)}).")
        if not inputs.get("video"):
            raise InputError("Add a video of the object (a video file, a GIF or a .zip of frames).")


def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the image or the 21 frames (and masks) and check every input and option. No model loads here."""
    _check_size(options)
    _check_media(inputs, options.model)
    model_config = Path(inputs["model_config"]) if inputs.get("model_config") else None
    if model_config is not None:
        from engine.pipelines.fourd.config import read_model_config

        read_model_config(model_config, options.model)
    if options.model in IMAGE_MODELS:
        camera_path(options.elevation, parse_degrees(options.elevations, "elevations"),
                    parse_degrees(options.azimuths, "azimuths"))
        image = read_object_image(inputs["image"], inputs.get("mask"))
        if image.shape[-1] == 4 or not options.remove_bg:
            check_object_left([image], removed=False)
        return {"image": image, "model_config": model_config}
    clip, masks = _read_inputs(inputs.get("video"), inputs.get("mask"), options)
    return {"clip": clip, "masks": masks, "model_config": model_config}


def _cut_out(clip: Clip, masks: list[np.ndarray] | None, remove_bg: bool, model: Path | None,
             report: Any = None) -> tuple[list[np.ndarray], bool]:
    """The frames with the object's transparency: from the masks, rembg, or as they are. Returns (frames, removed)."""
    if masks is not None:
        return mask_sequence(clip.frames, masks), False
    if not remove_bg or all(frame.shape[-1] == 4 for frame in clip.frames):
        return list(clip.frames), False
    if model is None:
        raise ValueError("background removal needs the U2-Net model file")
    remover = BackgroundRemover(model)
    cut: list[np.ndarray] = []
    done: dict[int, np.ndarray] = {}
    for i, (index, frame) in enumerate(zip(clip.indices, clip.frames)):
        if index not in done:  # a short clip repeats source frames: each is cut once
            done[index] = remover(frame)
            if report is not None:
                report(i)
        cut.append(done[index])
    return cut, True


def _needs_remover(clip: Clip, masks: Any, remove_bg: bool) -> bool:
    return masks is None and remove_bg and any(frame.shape[-1] != 4 for frame in clip.frames)


def prepare(clip: Clip, masks: list[np.ndarray] | None, options: Options, model: Path | None,
            report: Any = None) -> np.ndarray:
    """The model's input: uint8 [21, size, size, 3], the object framed on white."""
    frames, removed = _cut_out(clip, masks, options.remove_bg, model, report)
    check_object_left(frames, removed)
    return frame_object(frames, options.size, FRAME_RATIOS.get(options.model, FRAME_RATIO))


def execute(ctx: JobContext) -> dict[str, Path]:
    if ctx.options.model in IMAGE_MODELS:
        return _execute_orbit(ctx)
    clip, masks, options = ctx.inputs["clip"], ctx.inputs["masks"], ctx.options
    if clip.repeats:
        ctx.warn(f"'{clip.name}' has only {clip.total} frames from the start frame on; SV4D works on "
                 f"{CLIP_FRAMES}, so some frames are used twice (the motion plays slower).")
    model = None
    if _needs_remover(clip, masks, options.remove_bg):
        ctx.progress(0.0, "Removing the background")
        model = ctx.checkpoint(REMBG_CHECKPOINT) / MODEL_FILE

    def removed_one(i: int) -> None:
        ctx.cancel.check()
        ctx.progress(0.0, f"Removing the background: frame {i + 1}/{CLIP_FRAMES}")

    processed = prepare(clip, masks, options, model, removed_one)
    ctx.record("source_frames", {"name": clip.name, "count": clip.total, "used": clip.indices})
    ctx.record("object", "mask" if masks is not None else "rembg u2net" if model is not None else "as given")
    files = {"processed_input": ctx.path("processed_input.mp4")}
    media.write_mp4(files["processed_input"], iter(processed), outputs.FPS)
    ctx.progress(0.0, "Processed input ready (processed_input.mp4); loading SV4D")
    ctx.cancel.check()

    result = ctx.pipeline()({"frames": processed, "model_config": ctx.inputs["model_config"]}, options,
                            ctx.progress, ctx.cancel)
    views = np.concatenate([processed[None], np.asarray(result.views)])  # view 0: the input's own view
    azimuths = (0.0, *result.azimuths)
    elevations = (float(result.elevation),) * len(azimuths)  # one elevation for every view, as the original
    for path in outputs.write_views(ctx.folder, views[1:], first=1):
        files[path.stem] = path
    files["grid"] = outputs.write_grid(ctx.path("grid.mp4"), views)
    ordered = list(outputs.by_azimuth(views, azimuths, elevations))
    files["orbit"] = outputs.write_orbit(ctx.path("orbit.mp4"), np.stack([v for v, _, _ in ordered]))
    files["frames"] = outputs.write_frames_zip(ctx.path("frames.zip"), views)
    files["cameras"] = outputs.write_cameras(ctx.path("cameras.json"), azimuths, elevations)
    ctx.record("azimuths_deg", list(azimuths))
    return files


def _execute_orbit(ctx: JobContext) -> dict[str, Path]:
    """SV3D: cut the object out, frame it, show it, sample the 21 views, write orbit.mp4, frames.zip (view_XX/000.png,
    the last view being the input's) and, for SV3D_p, cameras.json."""
    image, options = ctx.inputs["image"], ctx.options
    if options.model == "sv3d_u" and (options.elevations or options.azimuths):
        ctx.warn("sv3d_u has no camera control: elevations and azimuths are ignored (use sv3d_p).")
    remover = None
    if image.shape[-1] != 4 and options.remove_bg:
        ctx.progress(0.0, "Removing the background")
        remover = BackgroundRemover(ctx.checkpoint(REMBG_CHECKPOINT) / MODEL_FILE)
    processed = frame_image(cut_out(image, options.remove_bg, remover), options.size, removed=remover is not None)
    ctx.record("object", "rembg u2net" if remover is not None else "mask or transparency" if image.shape[-1] == 4
               else "as given")
    files = {"processed_input": media.write_png(ctx.path("processed_input.png"), processed)}
    ctx.progress(0.0, "Processed input ready (processed_input.png); loading SV3D")
    ctx.cancel.check()

    result = ctx.pipeline()({"image": processed, "model_config": ctx.inputs["model_config"]}, options,
                            ctx.progress, ctx.cancel)
    views = outputs.sv3d_frames(result.samples, options.watermark)
    ctx.record("watermark", bool(options.watermark))
    media.write_mp4(ctx.path("orbit.mp4"), iter(views), outputs.FPS)
    files["orbit"] = ctx.path("orbit.mp4")
    files["frames"] = outputs.write_frames_zip(ctx.path("frames.zip"), views[:, None])
    if result.cameras_used:
        files["cameras"] = outputs.write_cameras(ctx.path("cameras.json"), result.azimuths_deg, result.elevations_deg)
        ctx.record("azimuths_deg", list(result.azimuths_deg))
        ctx.record("elevations_deg", list(result.elevations_deg))
    return files


def preview_input(ctx: PreviewContext, video: str | Path, mask: str | Path | None = None,
                  remove_bg: bool | None = None, start_frame: int | None = None, size: int | None = None
                  ) -> np.ndarray:
    """The 21 frames as the model will see them (background removed, framed), as one contact sheet."""
    options = ctx.options(remove_bg=remove_bg, start_frame=start_frame, size=size)
    _check_size(options)
    clip, masks = _read_inputs(video, mask, options)
    model = ctx.checkpoint(REMBG_CHECKPOINT) / MODEL_FILE if _needs_remover(clip, masks, options.remove_bg) else None
    with ctx.exclusive():
        processed = prepare(clip, masks, options, model)
    tiles = [media.resize(frame, PREVIEW_TILE, PREVIEW_TILE) for frame in processed]
    return outputs.grid_frame(tiles, columns=7)


def preview_image(ctx: PreviewContext, image: str | Path, mask: str | Path | None = None,
                  remove_bg: bool | None = None, size: int | None = None) -> np.ndarray:
    """The picture as SV3D will see it (background removed, framed on white)."""
    options = ctx.options(remove_bg=remove_bg, size=size)
    _check_size(options)
    picture = read_object_image(image, mask)
    remover = None
    if picture.shape[-1] != 4 and options.remove_bg:
        remover = BackgroundRemover(ctx.checkpoint(REMBG_CHECKPOINT) / MODEL_FILE)
    with ctx.exclusive():
        return frame_image(cut_out(picture, options.remove_bg, remover), options.size, removed=remover is not None)


PREVIEWS = {"input": preview_input, "image": preview_image}
