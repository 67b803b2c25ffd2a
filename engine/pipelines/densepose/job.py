"""DensePose extraction job: check the video (before any model loads), detect every frame, write densepose.mp4.
`check_video` and `extract` are also the pose job's, for an ordinary motion video."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from engine import limits, media
from engine.errors import InputError
from engine.jobs import JobContext
from engine.pipelines.base import CancelToken, Progress
from engine.pipelines.densepose.clip import ClipLabels, rendered
from engine.tasks import Options


def check_video(path: str | Path, fps: float, what: str = "Video") -> None:
    """A readable video whose first frame decodes and whose length is within the limits (no full decode)."""
    path = Path(path)
    info = media.video_info(path)
    count = media.resampled_count(info.frames, info.fps, fps) if info.frames else 0
    if count > limits.current().max_video_frames:
        raise InputError(f"{what} '{path.name}' is too long ({info.frames} frames at {info.fps:g} fps; at most "
                         f"{limits.current().max_video_frames} frames at {fps:g} fps). Trim it or lower the fps "
                         "option.")
    with closing(media.iter_video(path)) as frames:
        if next(frames, None) is None:
            raise InputError(f"{what} '{path.name}' contains no frames.")


def extract(pipeline: Any, video: Path, options: Options, out: Path, progress: Progress,
            cancel: CancelToken | None) -> ClipLabels:
    """Detect (pipeline: the densepose task's), then frame, fill, smooth and render into `out` (H.264 mp4)."""
    clip = pipeline({"video": video}, options, progress, cancel)
    progress(0.95, "Writing the DensePose video")
    media.write_mp4(out, rendered(clip, video.name, options.framing, options.size, options.margin, options.smooth),
                    clip.fps)
    return clip


def report(ctx: JobContext, clip: ClipLabels, name: str) -> None:
    """Record the extraction's counts in settings.json ("details": {"extraction": ...}) and warn when frames had no
    one (they repeat the nearest frame that had someone)."""
    ctx.record("extraction", clip.counts())
    if clip.frames_without_person:
        ctx.warn(f"No person was found in {clip.frames_without_person} of {clip.frames} frames of '{name}'; they "
                 "show the nearest frame where someone was found.")


def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    if not inputs.get("video"):
        raise InputError("Give a video of a person (MP4, MOV or WebM).")
    check_video(inputs["video"], options.fps)
    return {"video": Path(inputs["video"])}


def execute(ctx: JobContext) -> dict[str, Path]:
    outputs = {"video": ctx.path("densepose.mp4")}
    clip = extract(ctx.pipeline(), ctx.inputs["video"], ctx.options, outputs["video"], ctx.progress, ctx.cancel)
    report(ctx, clip, ctx.inputs["video"].name)
    return outputs
