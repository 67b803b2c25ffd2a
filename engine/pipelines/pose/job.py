"""Pose animation job: check the reference photo and the motion video (before any model loads); when the motion is
an ordinary video, extract its DensePose first (the densepose task's pipeline, written as densepose.mp4); fit both to
the working square, run MagicAnimate, write result.mp4 and grid.mp4 (reference | motion | result, the original
demo's output); plus the tab's preview of the fitted reference.
"""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from engine import limits, media
from engine.errors import InputError
from engine.jobs import JobContext, PreviewContext
from engine.pipelines.densepose.job import extract, report
from engine.pipelines.pose.palette import densepose_warning, looks_like_densepose
from engine.tasks import Options

RESIZE = "bicubic"  # the original resizes the reference and every motion frame with Pillow's default (bicubic)


# ---------------------------------------------------------------------------------------------------- inputs

def read_reference(path: str | Path) -> np.ndarray:
    """The reference photo as HxWx3 uint8; pictures over the pixel limit are refused from their header."""
    return media.read_image(path, keep_alpha=False, what="Reference image")


def check_motion(path: str | Path, fps: float) -> np.ndarray:
    """A readable video whose length is within the limits (no full decode). Returns its first frame."""
    path = Path(path)
    info = media.video_info(path)
    if info.frames and media.resampled_count(info.frames, info.fps, fps) > limits.current().max_video_frames:
        raise motion_too_long(path, f"{info.frames} frames at {info.fps:g} fps", fps)
    with closing(media.iter_video(path)) as frames:
        first = next(frames, None)
    if first is None:
        raise InputError(f"Motion video '{path.name}' contains no frames. Export it again.")
    return first


def motion_kind(first_frame: np.ndarray, option: str) -> str:
    """"densepose" (used as it is) or "video" (extracted first); auto decides from the first frame's colours."""
    if option != "auto":
        return option
    return "densepose" if looks_like_densepose(first_frame) else "video"


def motion_too_long(path: Path, length: str, fps: float) -> InputError:
    """The 'too long' error; the frame limit is the engine's (--max-video-frames): the decoded clip is held whole."""
    return InputError(f"Motion video '{path.name}' is too long ({length}; at most {limits.current().max_video_frames} "
                      f"frames at {fps:g} fps). Trim it or lower the fps option.")


def border_colour(image: np.ndarray) -> tuple[int, ...]:
    """Per-channel median of the outermost pixels: the colour 'pad' fills with (DensePose's background is
    viridis(0) = (65, 0, 81), not black; a photo's border continues into its bars)."""
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(int(v) for v in np.median(edges, axis=0))


def fit_reference(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """The reference as the model will see it: size x size, cropped, padded or stretched (the tab previews this)."""
    colour = border_colour(image)  # media.fit's fill goes to np.full, which takes a colour as well as an int
    return media.fit(image, size, size, mode, fill=colour, method=RESIZE)


def read_motion(path: str | Path, fps: float, size: int, mode: str) -> list[np.ndarray]:
    """Every motion frame resampled to `fps` and fitted to size x size (pad bars in the first frame's border colour).

    Frames are fitted as they are decoded, so a long high-resolution video never sits in memory at full size, and
    decoding stops with an InputError once the clip passes the frame limit (containers that do not store their
    frame count get past check_motion)."""
    path = Path(path)
    source_fps = media.video_info(path).fps
    max_frames = limits.current().max_video_frames
    fill: tuple[int, ...] | None = None
    decoded = 0

    def fitted(frame: np.ndarray) -> np.ndarray:
        nonlocal fill, decoded
        decoded += 1
        if media.resampled_count(decoded, source_fps, fps) > max_frames:
            raise motion_too_long(path, f"at least {decoded} frames at {source_fps:g} fps", fps)
        if fill is None:
            fill = border_colour(frame)
        return media.fit(frame, size, size, mode, fill=fill, method=RESIZE)

    frames, _ = media.read_video(path, fps=fps, transform=fitted)
    return frames


def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the reference, check the motion video and the option combination. No model is loaded."""
    from engine.pipelines.pose.pipeline import PosePipeline

    PosePipeline.check_options(options)  # size a multiple of 64, overlap < context
    if not inputs.get("image"):
        raise InputError("Give a reference image: a photo of the person to animate (PNG, JPEG or WebP).")
    if not inputs.get("motion"):
        raise InputError("Give a motion video: a DensePose rendering of the movement (MP4, 25 fps, 512x512 is best).")
    reference = read_reference(inputs["image"])
    first = check_motion(inputs["motion"], options.fps)
    return {"reference": reference, "motion": Path(inputs["motion"]), "kind": motion_kind(first, options.motion_kind)}


# ---------------------------------------------------------------------------------------------------- run

def execute(ctx: JobContext) -> dict[str, Path]:
    opts = ctx.options
    size, mode, fps = opts.size, opts.fit, opts.fps
    source, outputs = ctx.inputs["motion"], {}
    ctx.record("motion_kind", ctx.inputs["kind"])  # what auto chose: "densepose" (used as it is) or "video"
    if ctx.inputs["kind"] == "video":
        ctx.progress(0.0, f"'{source.name}' is an ordinary video: extracting its DensePose first")
        outputs["densepose"] = ctx.path("densepose.mp4")
        report(ctx, extract(ctx.pipeline("densepose"), source, opts, outputs["densepose"], ctx.progress, ctx.cancel),
               source.name)
        source = outputs["densepose"]
    ctx.progress(0.0, "Reading the DensePose motion video")
    motion = read_motion(source, fps, size, mode)
    warning = densepose_warning(motion[0], source.name) if ctx.inputs["kind"] == "densepose" else None
    if warning:
        ctx.warn(warning)
    reference = fit_reference(ctx.inputs["reference"], size, mode)
    pipeline = ctx.pipeline()
    result = pipeline({"reference": reference, "motion": motion}, opts, ctx.progress, ctx.cancel)
    outputs["video"] = ctx.path("result.mp4")
    media.write_mp4(outputs["video"], result, fps)
    if opts.grid:
        outputs["grid"] = ctx.path("grid.mp4")
        media.write_mp4(outputs["grid"], (media.hstack([reference, m, r]) for m, r in zip(motion, result)), fps)
    return outputs


# ---------------------------------------------------------------------------------------------------- previews

def preview_reference(ctx: PreviewContext, image: str | Path | None, size: int | None = None,
                      fit: str | None = None) -> np.ndarray | None:
    """The reference as the model will see it (the tab shows it beside the upload)."""
    if not image:
        return None
    options = ctx.options(size=size, fit=fit)
    return fit_reference(read_reference(image), options.size, options.fit)


PREVIEWS = {"reference": preview_reference}
