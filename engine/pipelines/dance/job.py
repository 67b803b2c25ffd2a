"""Character-sheet dancing job: read and check the user's files (before any model loads), run CoNR, write outputs."""
from __future__ import annotations

import shutil
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine import media
from engine.errors import InputError
from engine.jobs import JobContext, PreviewContext
from engine.tasks import Options
from engine.pipelines.dance.cutout import MODEL_FILE, AnimeCutout, needs_cutout
from engine.pipelines.dance.sheets import check_sheet_size
from engine.pipelines.dance.udp import IMAGE_EXTENSIONS, UDP_EXTENSIONS, VideoPoses, open_pose_sequence

MAX_SHEETS = 8
EXAMPLE_POSES = "poses_template.zip"
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")
PREVIEW_FRAMES = 12


def _pose_mode(path: Path) -> str:
    """'udp' for .npz frames (one, or a zip/folder of them), 'parser' for a video or pictures."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS:
        return "parser"
    if suffix in UDP_EXTENSIONS:  # a one-frame sequence (an .npz is itself a zip: decided before looking inside)
        return "udp"
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    else:
        raise InputError(f"'{path.name}' is not a pose sequence. Give a .zip or folder of UDP .npz frames, a dance "
                         f"video ({', '.join(VIDEO_EXTENSIONS)}), or a .zip/folder of pose pictures.")
    lowered = [n.lower() for n in names]
    if any(n.endswith(UDP_EXTENSIONS) for n in lowered):
        return "udp"
    if any(n.endswith(IMAGE_EXTENSIONS) for n in lowered):
        return "parser"
    raise InputError(f"'{path.name}' holds no .npz pose frames and no pictures. Give UDP .npz frames (key 'i') "
                     f"or pose pictures.")


def _check_sheet(path: Path, image: np.ndarray) -> None:
    """The pipeline's own sheet checks (visible character, some transparency), with the file named."""
    from engine.pipelines.dance.pipeline import WORKING_SIZE
    from engine.pipelines.dance.sheets import prepare_sheets

    prepare_sheets([image], WORKING_SIZE, names=[path.name])


def _read_sheets(sheets: list[Path], masks: list[Path]) -> list[np.ndarray]:
    if not sheets:
        raise InputError("Add at least one character-sheet image (up to 8 views of the same character).")
    if len(sheets) > MAX_SHEETS:
        raise InputError(f"{len(sheets)} sheets given; CoNR takes 1 to {MAX_SHEETS}. Remove some views.")
    if masks and len(masks) != len(sheets):
        raise InputError(f"{len(masks)} masks for {len(sheets)} sheets: give one mask per sheet, in the same order.")
    images = [media.read_image(p, what="Character sheet") for p in sheets]
    for path, image in zip(sheets, images):  # every sheet, cut out later or not: refused before any model loads
        check_sheet_size(image, f"Character sheet '{Path(path).name}'")
    for i, mask_path in enumerate(masks):
        mask = media.read_image(mask_path, keep_alpha=False, what="Mask")
        if mask.shape[:2] != images[i].shape[:2]:
            raise InputError(f"Mask '{Path(mask_path).name}' is {mask.shape[1]}x{mask.shape[0]} but sheet "
                             f"'{Path(sheets[i]).name}' is {images[i].shape[1]}x{images[i].shape[0]}: sizes must match.")
        images[i] = np.dstack([images[i][..., :3], mask.max(axis=-1)])
        if images[i][..., 3].max() == 0:
            raise InputError(f"Mask '{Path(mask_path).name}' is empty (all black): paint the character white.")
    return images


def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the sheets and check every input and option. Nothing heavy happens here."""
    from engine.pipelines.dance.pipeline import DancePipeline

    DancePipeline.check_options(options)
    sheets = [Path(p) for p in inputs.get("sheets") or []]
    images = _read_sheets(sheets, [Path(p) for p in inputs.get("masks") or []])
    cut = [needs_cutout(img) for img in images]
    for path, image, needed in zip(sheets, images, cut):
        if not needed:
            _check_sheet(path, image)
    if any(cut) and not options.cutout:
        names = ", ".join(p.name for p, c in zip(sheets, cut) if c)
        raise InputError(f"{names}: no transparent area. Turn on automatic cut-out, upload masks, or save the "
                         f"sheets as PNGs with a transparent background.")
    poses = inputs.get("poses")
    pose_mode = _pose_mode(Path(poses)) if poses else "udp"
    if poses:  # opening reads every frame header (a video's packets): bad frames fail now, before any model loads
        with closing(_open_poses(Path(poses), pose_mode, options)) as sequence:
            _check_range(options, sequence)
    background = options.background.strip()
    if background == "image":
        if not inputs.get("background_image"):
            raise InputError("background is 'image' but no background image was given.")
        backdrop: Any = media.read_image(inputs["background_image"], keep_alpha=False, what="Background image")
    elif background.startswith("#"):
        backdrop = media.parse_colour(background)
    elif background == "transparent":
        backdrop = None
    else:
        raise InputError(f"background '{background}' is not transparent, a #RRGGBB colour or 'image'.")
    return {"sheets": images, "sheet_names": [p.name for p in sheets], "needs_cutout": cut,
            "poses": Path(poses) if poses else None, "pose_mode": pose_mode, "backdrop": backdrop}


def _open_poses(path: Path, mode: str, options: Options) -> Any:
    """The pose sequence at `path`; a video is decoded lazily, and never past frame_end."""
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoPoses(path, stop=options.frame_end if options.frame_end >= 0 else None)
    return open_pose_sequence(path, mode)


def _check_range(options: Options, poses: Any) -> int:
    """Frames the job will render; InputError for an empty sequence or range, or pose frames too large to write."""
    from engine.pipelines.dance.pipeline import frame_range
    from engine.pipelines.dance.sheets import MAX_OUTPUT_SIDE

    if len(poses) == 0:
        raise InputError("The pose sequence has zero frames.")
    height, width = poses.frame_size
    if options.output_size != "fit" and max(height, width) > MAX_OUTPUT_SIDE:
        raise InputError(f"The pose frames are {width}x{height}; output_size 'crop' writes the result at that size, "
                         f"and at most {MAX_OUTPUT_SIDE} pixels a side. Choose output_size 'fit' or downscale the poses.")
    return len(frame_range(options, len(poses)))


def _pose_source(ctx: JobContext) -> Any:
    """The pose sequence object the pipeline reads: the given file or video, or the example motion."""
    path, mode = ctx.inputs["poses"], ctx.inputs["pose_mode"]
    if path is None:
        path = ctx.checkpoint("conr") / EXAMPLE_POSES
    poses = _open_poses(path, mode, ctx.options)
    _check_range(ctx.options, poses)
    return poses


def _cut_out(ctx: JobContext) -> list[np.ndarray]:
    sheets = list(ctx.inputs["sheets"])
    if any(ctx.inputs["needs_cutout"]):
        ctx.progress(0.0, "Cutting out the character sheets")
        cutter = AnimeCutout(ctx.checkpoint("anime_seg") / MODEL_FILE)
        folder = ctx.path("cutouts")
        folder.mkdir()
        for i, needed in enumerate(ctx.inputs["needs_cutout"]):
            if needed:
                sheets[i] = cutter(sheets[i])
                media.write_png(folder / f"{i:02d}.png", sheets[i])
    return sheets


def execute(ctx: JobContext) -> dict[str, Path]:
    sheets = _cut_out(ctx)
    poses = _pose_source(ctx)
    total = _check_range(ctx.options, poses)
    pipeline = ctx.pipeline()
    frames = pipeline({"sheets": sheets, "poses": poses, "pose_mode": ctx.inputs["pose_mode"]}, ctx.options,
                      ctx.progress, ctx.cancel)
    preview_at = set(np.linspace(0, total - 1, min(PREVIEW_FRAMES, total)).round().astype(int).tolist())
    preview_dir = ctx.path("preview")
    preview_dir.mkdir()
    backdrop = None if ctx.inputs["backdrop"] is None else media.Backdrop(ctx.inputs["backdrop"])  # fitted once

    def with_previews() -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames):
            if i in preview_at:
                media.write_png(preview_dir / f"{i:06d}.png", media.composite(frame, backdrop))
            yield frame

    outputs: dict[str, Path] = {}
    fmt, fps = ctx.options.format, ctx.options.fps
    if fmt == "mp4":
        outputs["video"] = ctx.path("result.mp4")
        media.write_mp4(outputs["video"], (media.composite(f, backdrop) for f in with_previews()), fps)
    elif fmt == "webm":
        outputs["video"] = ctx.path("result.webm")
        media.write_webm_alpha(outputs["video"], (_straight(f, backdrop) for f in with_previews()), fps)
    else:
        frames_dir = ctx.path("frames")
        media.write_png_sequence(frames_dir, (_straight(f, backdrop) for f in with_previews()))
        outputs["frames"] = frames_dir
        outputs["archive"] = Path(shutil.make_archive(str(ctx.path("frames")), "zip", frames_dir))
    poses.close()
    outputs["preview"] = preview_dir
    if ctx.path("cutouts").exists():
        outputs["cutouts"] = ctx.path("cutouts")
    return outputs


def _straight(frame: np.ndarray, backdrop: Any) -> np.ndarray:
    """RGBA with straight alpha; a chosen background is composited in (then fully opaque)."""
    if backdrop is None:
        return media.unpremultiply(frame)
    rgb = media.composite(frame, backdrop)
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def preview_cutout(ctx: PreviewContext, sheets: list[str | Path]) -> list[np.ndarray]:
    """What automatic cut-out makes of each sheet (sheets that already have transparency are returned as they are)."""
    images = _read_sheets([Path(p) for p in sheets or []], [])
    if not any(needs_cutout(img) for img in images):
        return images
    model = ctx.checkpoint("anime_seg") / MODEL_FILE
    with ctx.exclusive():
        cutter = AnimeCutout(model)
        return [cutter(img) if needs_cutout(img) else img for img in images]


PREVIEWS = {"cutout": preview_cutout}
