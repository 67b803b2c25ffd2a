"""Video to 4D job: read and check the clip (before any model loads), remove the background, frame the object, show
the processed input, run SV4D 2.0, write the views, grid, orbit, frames and cameras."""
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
from engine.pipelines.fourd.framing import frame_object
from engine.pipelines.fourd.spec import REMBG_CHECKPOINT

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


def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the 21 frames (and masks) and check every input and option. No model loads here."""
    _check_size(options)
    clip, masks = _read_inputs(inputs.get("video"), inputs.get("mask"), options)
    model_config = Path(inputs["model_config"]) if inputs.get("model_config") else None
    if model_config is not None:
        from engine.pipelines.fourd.config import read_model_config

        read_model_config(model_config)
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
    return frame_object(frames, options.size)


def execute(ctx: JobContext) -> dict[str, Path]:
    clip, masks, options = ctx.inputs["clip"], ctx.inputs["masks"], ctx.options
    if clip.repeats:
        ctx.warn(f"'{clip.name}' has only {clip.total} frames from the start frame on; SV4D 2.0 works on "
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
    ctx.progress(0.0, "Processed input ready (processed_input.mp4); loading SV4D 2.0")
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


PREVIEWS = {"input": preview_input}
