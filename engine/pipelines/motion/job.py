"""Trajectory animation job: read and check the picture, trajectories and brush (before any model loads), run
MOFA-Video, write result.mp4, flow.mp4, hint.png and the drawings used; plus the tab's live motion-field preview.

Trajectories are given in the input picture's pixels. The model works on the picture resized so its short side is
`size` and centre-cropped to multiples of 64, so points in the cropped-away border are rejected here with a message
that says so, instead of failing after the models have loaded.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from engine import media
from engine.errors import InputError, PreviewUnavailable
from engine.jobs import JobContext, PreviewContext
from engine.tasks import Options

EXAMPLE = "[[[120, 200], [180, 190], [240, 200]], [[400, 300], [400, 240]]]"


# ---------------------------------------------------------------------------------------------------- trajectories

def parse_trajectories(value: Any, source: str = "trajectories") -> list[list[list[float]]]:
    """A traj.json path, JSON text (a string starting with '[') or an already-parsed list -> list of trajectories
    of [x, y] floats.

    Only the structure is checked here; point counts and positions are checked against the picture by
    `check_trajectories`.
    """
    if isinstance(value, str) and not value.lstrip().startswith(("[", "{")):
        value = Path(value)
    if isinstance(value, Path):
        source, value = value.name, _read_trajectory_file(value)
    if isinstance(value, str):
        value = _load_trajectory_json(value, source)
    if not isinstance(value, list):
        raise InputError(f"'{source}' must be a list of trajectories (each a list of [x, y] points), e.g. {EXAMPLE}.")
    tracks = []
    for i, track in enumerate(value, start=1):
        if not isinstance(track, list) or not all(_is_point(p) for p in track):
            raise InputError(f"Trajectory {i} in '{source}' must be a list of [x, y] number pairs (finite "
                             f"pixel coordinates), e.g. [[120, 200], [180, 190]]; got {_shorten(track)}.")
        tracks.append([[float(x), float(y)] for x, y in track])
    return tracks


MAX_TRAJECTORY_BYTES = 1_000_000  # hand-drawn trajectories take a few KB; bounds the parser's time and memory


def _read_trajectory_file(path: Path) -> str:
    try:
        found = path.is_file()
    except OSError:  # text that is neither JSON nor a possible file name (too long, say)
        found = False
    if not found:
        raise InputError(f"Trajectories '{_shorten(str(path), 40)}' are neither JSON text nor an existing file. "
                         f"Give JSON such as {EXAMPLE}, or a file holding it.")
    _check_trajectory_size(path.stat().st_size, path.name)
    return path.read_text(encoding="utf-8", errors="replace")


def _check_trajectory_size(size: int, source: str) -> None:
    if size > MAX_TRAJECTORY_BYTES:
        raise InputError(f"'{source}' is {size / 1e6:.1f} MB; trajectories are at most {MAX_TRAJECTORY_BYTES // 10**6} "
                         f"MB of JSON. Give a few lists of [x, y] points, e.g. {EXAMPLE}.")


def _load_trajectory_json(text: str, source: str) -> Any:
    """json.loads with the failures a hostile or broken file causes (bad syntax, deep nesting, NaN/Infinity, an
    integer too long for Python to convert) as InputErrors naming `source`."""
    _check_trajectory_size(len(text.encode("utf-8", errors="replace")), source)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"'{source}' is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                         f"Write a list of trajectories of [x, y] points, e.g. {EXAMPLE}.") from None
    except RecursionError:
        raise InputError(f"'{source}' is nested too deeply to be trajectories: write a list of trajectories, each a "
                         f"list of [x, y] points, e.g. {EXAMPLE}.") from None
    except ValueError:  # NaN/Infinity (refused below) or an integer over Python's digit limit
        raise InputError(f"'{source}' holds NaN, Infinity or a number with thousands of digits, which is no pixel "
                         f"coordinate. Use plain numbers, e.g. {EXAMPLE}.") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _is_point(point: Any) -> bool:
    return isinstance(point, (list, tuple)) and len(point) == 2 and all(_is_coordinate(v) for v in point)


def _is_coordinate(value: Any) -> bool:
    """A finite int or float (not a bool); a huge int overflows float() and is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shorten(value: Any, limit: int = 60) -> str:
    """JSON of a value cut to `limit` characters (an int over Python's digit limit cannot be written out)."""
    try:
        return json.dumps(value)[:limit]
    except ValueError:  # an int over Python's digit limit
        return "a number with too many digits"


def check_trajectories(tracks: list[list[list[float]]], image: np.ndarray, size: int) -> None:
    """At least one trajectory; each with >= 2 points inside the picture and inside the part the model sees."""
    from engine.models.mofa import flows

    height, width = image.shape[:2]
    flows.validate_trajectories(tracks, width, height)
    prepared, transform = flows.prepare_image(image, size)
    crop_h, crop_w = prepared.shape[:2]
    scale, left, top = transform
    for i, track in enumerate(flows.transform_points(tracks, transform), start=1):
        points = np.asarray(track)
        if (points < 0).any() or (points[:, 0] >= crop_w).any() or (points[:, 1] >= crop_h).any():
            x0, y0 = left / scale, top / scale
            x1, y1 = (left + crop_w) / scale, (top + crop_h) / scale
            raise InputError(f"Trajectory {i} reaches the border that is cropped away: the model sees x "
                             f"{x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} of the {width}x{height} picture "
                             f"(short side resized to {size}, centre-cropped to multiples of 64). Draw inside it.")


# ---------------------------------------------------------------------------------------------------- brush

def read_brush(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Motion brush picture -> uint8 HxW, 255 where painted."""
    return media.read_mask(path, shape, "Motion brush", "the picture",
                           "Paint the region that should move, or leave the brush out.")


# ---------------------------------------------------------------------------------------------------- job

def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the picture, trajectories and brush and check them and the options. No model is touched."""
    from engine.pipelines.motion.pipeline import MotionPipeline

    MotionPipeline.check_options(options)
    if not inputs.get("image"):
        raise InputError("No picture given. Upload an image (CLI: --image PATH).")
    image = media.read_image(inputs["image"], keep_alpha=False, what="Picture")
    if inputs.get("trajectories") is None:
        raise InputError(f"No trajectories given. Draw them on the picture (CLI: --trajectories traj.json holding "
                         f"e.g. {EXAMPLE}).")
    tracks = parse_trajectories(inputs["trajectories"])
    check_trajectories(tracks, image, options.size)
    brush = read_brush(inputs["brush"], image.shape[:2]) if inputs.get("brush") else None
    return {"image": image, "trajectories": tracks, "brush": brush}


def execute(ctx: JobContext) -> dict[str, Path]:
    out = ctx.pipeline()(ctx.inputs, ctx.options, ctx.progress, ctx.cancel)
    fps = ctx.options.fps
    outputs = {"video": ctx.path("result.mp4"), "flow": ctx.path("flow.mp4"), "hint": ctx.path("hint.png"),
               "trajectories": ctx.path("trajectories.json")}
    media.write_mp4(outputs["video"], media.to_uint8(out.frames), fps)
    media.write_mp4(outputs["flow"], out.flow_frames, fps)
    media.write_png(outputs["hint"], out.hint)
    # The drawings as used, so the run can be repeated: --trajectories trajectories.json [--brush brush.png].
    outputs["trajectories"].write_text(json.dumps(ctx.inputs["trajectories"]))
    if ctx.inputs["brush"] is not None:
        outputs["brush"] = media.write_png(ctx.path("brush.png"), ctx.inputs["brush"])
    return outputs


# ---------------------------------------------------------------------------------------------------- previews

def preview_motion_field(ctx: PreviewContext, image: np.ndarray, trajectories: Any,
                         brush: np.ndarray | None = None, size: int | None = None) -> np.ndarray:
    """The dense motion field CMP makes of the drawings (colour-coded, last frame), before any diffusion runs."""
    finished = [t for t in parse_trajectories(trajectories) if len(t) >= 2]
    if not finished:
        raise PreviewUnavailable("Click at least two points to see the motion field.")
    size = ctx.options(size=size).size
    check_trajectories(finished, image, size)
    with ctx.pipeline() as pipeline:
        return pipeline.preview_flow(image, finished, brush, size)


def preview_trajectories(ctx: PreviewContext, text: Any) -> list[list[list[float]]]:
    """Trajectories typed or pasted as JSON, parsed and checked for structure (the tab redraws them)."""
    return parse_trajectories(text, "Trajectories (JSON)")


PREVIEWS = {"motion_field": preview_motion_field, "trajectories": preview_trajectories}
