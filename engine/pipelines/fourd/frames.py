"""The object's clip: a video, a GIF or a .zip/folder of frames, read within the engine's limits, and the 21 frames
SV4D 2.0 works on chosen from it.

Only the chosen frames are decoded (a video's other frames are decoded and dropped one at a time; a zip's other members
are never inflated). Frames keep their transparency when the file has some (PNG frames); GIF transparency is refused
(one-bit, and the original would take it as the object's exact outline: see `read_gif_frames`).
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageSequence

from engine import limits, media
from engine.archives import IMAGE_EXTENSIONS, FrameFiles
from engine.errors import InputError

# n_frames 21: sample() in scripts/sampling/simple_video_sample_4d2.py@0ad7de9a5cb5 (the model's fixed length)
CLIP_FRAMES = 21
MIN_SOURCE_FRAMES = 2
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
GIF_EXTENSIONS = (".gif",)
PAINTED = 127  # mask pixels brighter than this are the object (as engine.media.read_mask)
CLIP_HINT = ("Give a video (MP4, WebM, MOV, MKV, AVI), a GIF, or a .zip of frames (PNG/JPEG/WebP, named in order: "
             "0.png, 1.png, ...).")


@dataclass
class Clip:
    """The chosen frames (HxWx3 RGB or HxWx4 RGBA uint8, all one size), which source frame each is, and how many
    frames the source has."""

    frames: list[np.ndarray]
    indices: list[int]
    total: int
    name: str

    @property
    def repeats(self) -> bool:
        """True when the source had fewer frames than the clip needs, so some are used twice."""
        return len(set(self.indices)) < len(self.indices)


def choose_indices(total: int, start_frame: int = -1, count: int = CLIP_FRAMES) -> list[int]:
    """Source frame of each of the `count` clip frames.

    start_frame -1: spread evenly over the whole source (first and last frame included); N >= 0: `count` consecutive
    frames from frame N (the original reads the first 21). Too few frames (from N on) are spread evenly, repeating
    some, so a short clip plays slower rather than failing."""
    if start_frame >= total:
        raise InputError(f"start_frame is {start_frame} but the clip has only {total} frames (0 to {total - 1}). "
                         "Choose an earlier start, or -1 to spread the frames over the whole clip.")
    first = max(start_frame, 0)
    available = total - first
    if available < MIN_SOURCE_FRAMES:
        raise InputError(f"Only {available} frame left from frame {first}; SV4D 2.0 needs a clip of at least "
                         f"{MIN_SOURCE_FRAMES} frames (it works on {count}). {CLIP_HINT}")
    if start_frame >= 0 and available >= count:
        return list(range(first, first + count))
    return [first + int(i) for i in np.linspace(0, available - 1, count).round().astype(int)]


Pick = Callable[[int], list[int]]  # the source's frame count -> the source frames to read, in clip order


def read_clip(path: str | Path, start_frame: int = -1, count: int = CLIP_FRAMES, what: str = "Video") -> Clip:
    """The `count` frames of the clip at `path` (see `choose_indices`), every cost checked before decoding."""
    return _read(Path(path), lambda total: choose_indices(total, start_frame, count), what)


def _read(path: Path, pick: Pick, what: str) -> Clip:
    suffix = path.suffix.lower()
    if suffix in GIF_EXTENSIONS:
        return read_gif_frames(path, pick, what)
    if suffix in VIDEO_EXTENSIONS:
        return _read_video_frames(path, pick, what)
    if path.is_dir() or suffix == ".zip" or (path.is_file() and suffix not in IMAGE_EXTENSIONS and zipfile.is_zipfile(path)):
        return _read_frame_files(path, pick, what)
    if suffix in IMAGE_EXTENSIONS:
        raise InputError(f"{what} '{path.name}' is a single picture; SV4D 2.0 needs a clip of at least "
                         f"{MIN_SOURCE_FRAMES} frames. {CLIP_HINT}")
    raise InputError(f"{what} '{path.name}' is not a video, a GIF or a .zip of frames. {CLIP_HINT}")


def _check_pixels(height: int, width: int, what: str) -> None:
    max_pixels = limits.current().max_image_pixels
    if height * width > max_pixels:
        raise InputError(f"{what} frames are {width}x{height}, more than {max_pixels / 1e6:g} megapixels (the limit is "
                         f"set with --max-image-megapixels). Downscale the clip: SV4D 2.0 works at 576x576.")


def _check_count(total: int, name: str, what: str) -> None:
    max_frames = limits.current().max_video_frames
    if total > max_frames:
        raise InputError(f"{what} '{name}' is too long (at least {total} frames; at most {max_frames} are read from one "
                         "clip, set with --max-video-frames). Trim it: 21 frames are used.")
    if total < MIN_SOURCE_FRAMES:
        raise InputError(f"{what} '{name}' has {total} frame{'s' if total != 1 else ''}; SV4D 2.0 needs a clip of at "
                         f"least {MIN_SOURCE_FRAMES} frames (it works on 21). {CLIP_HINT}")


def _read_video_frames(path: Path, pick: Pick, what: str) -> Clip:
    info = media.video_info(path)
    _check_pixels(info.height, info.width, f"{what} '{path.name}'")
    max_frames = limits.current().max_video_frames
    total = media.count_video_frames(path, max_frames + 1)  # packets only: nothing decoded yet
    _check_count(total, path.name, what)
    indices = pick(total)
    wanted = set(indices)
    decoded: dict[int, np.ndarray] = {}
    frames = media.iter_video(path)
    try:
        for index, frame in enumerate(frames):
            if index in wanted:
                decoded[index] = frame
            if index >= max(indices):
                break
    finally:
        frames.close()  # type: ignore[attr-defined]
    if len(decoded) < len(wanted):
        raise InputError(f"{what} '{path.name}' ended after {len(decoded)} decodable frames although it holds {total}; "
                         "the video is damaged. Re-export it.")
    return Clip([decoded[i] for i in indices], indices, total, path.name)


def read_gif_frames(path: Path, pick: Pick, what: str) -> Clip:
    """GIF frames through Pillow, as the original reads GIFs (ImageSequence, each frame converted to RGBA).

    GIF transparency is refused: the original would cut each frame along the GIF's one-bit transparency (no
    background removal), which leaves hard, often wrong outlines; PNG frames in a .zip keep real transparency.
    Opaque GIF frames are returned as RGB, so background removal runs on them; the original's RGBA conversion made
    every GIF frame skip removal and count whole as the object (the square then covered the whole frame)."""
    try:
        with Image.open(path) as gif:
            _check_pixels(gif.height, gif.width, f"{what} '{path.name}'")
            total = getattr(gif, "n_frames", 1)
            _check_count(total, path.name, what)
            indices = pick(total)
            wanted = set(indices)
            decoded: dict[int, np.ndarray] = {}
            for index, frame in enumerate(ImageSequence.Iterator(gif)):
                if index in wanted:
                    rgba = np.asarray(frame.convert("RGBA")).copy()
                    if rgba[..., 3].min() < 255:
                        raise InputError(f"{what} '{path.name}' has transparent pixels (frame {index}). GIF "
                                         "transparency is one-bit and makes a poor object outline: give the frames as "
                                         "PNGs with transparency in a .zip, or a GIF/video on a plain background.")
                    decoded[index] = rgba[..., :3]
                if index >= max(indices):
                    break
    except Image.DecompressionBombError:
        raise InputError(f"{what} '{path.name}' is too large to decode. Downscale it.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"Could not read '{path.name}' as a GIF ({exc.__class__.__name__}). {CLIP_HINT}") from exc
    return Clip([decoded[i] for i in indices], indices, total, path.name)


def _read_frame_files(path: Path, pick: Pick, what: str) -> Clip:
    files = FrameFiles(path, IMAGE_EXTENSIONS, "video frames")
    try:
        total = len(files)
        _check_count(total, path.name, what)
        sizes = [_frame_header(files, i) for i in range(total)]  # headers only: every frame's size checked first
        for index, size in enumerate(sizes):
            if size != sizes[0]:
                raise InputError(f"Frame {files.names[index]} of '{path.name}' is {size[1]}x{size[0]} but "
                                 f"{files.names[0]} is {sizes[0][1]}x{sizes[0][0]}; all frames must have one size.")
        _check_pixels(*sizes[0], f"{what} '{path.name}'")
        indices = pick(total)
        decoded = {i: _decode_frame(files, i) for i in sorted(set(indices))}
    finally:
        files.close()
    return Clip([decoded[i] for i in indices], indices, total, path.name)


def _frame_header(files: FrameFiles, index: int) -> tuple[int, int]:
    name = files.names[index]
    with files.reading(index) as stream:
        try:
            with Image.open(stream) as image:
                return image.height, image.width
        except Image.DecompressionBombError:
            side = math.isqrt(limits.current().max_image_pixels) + 1
            return side, side
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"Frame {name} is not a readable picture ({exc.__class__.__name__}). "
                             f"{media.IMAGE_HINT}") from exc


def _decode_frame(files: FrameFiles, index: int) -> np.ndarray:
    """RGB, or RGBA when the picture has any transparent pixel (a fully opaque alpha is dropped)."""
    name = files.names[index]
    data = files.read(index)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if (image.height, image.width) != _frame_header(files, index):  # changed since its header was checked
                raise InputError(f"Frame {name} changed while it was read; upload it again.")
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
            frame = np.asarray(image.convert("RGBA" if has_alpha else "RGB")).copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"Frame {name} could not be decoded ({exc.__class__.__name__}). {media.IMAGE_HINT}") from exc
    if frame.shape[-1] == 4 and frame[..., 3].min() == 255:
        frame = frame[..., :3]
    return frame


def read_masks(path: str | Path, clip: Clip, what: str = "Mask") -> list[np.ndarray]:
    """One HxW uint8 mask (255 = object) per clip frame: a single picture for all frames, or a clip of masks with
    one mask per source frame (the same frames are chosen). Masks are painted: bright (> 127) is the object, so a
    compressed mask video's near-black noise stays background."""
    path = Path(path)
    height, width = clip.frames[0].shape[:2]
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        mask = media.read_mask(path, (height, width), what, "the video", "Paint the object white.")
        return [mask] * len(clip.frames)
    masks = []
    for frame in _masks_clip(path, clip, what).frames:
        if frame.shape[:2] != (height, width):
            raise InputError(f"{what} '{path.name}' is {frame.shape[1]}x{frame.shape[0]} but the video is "
                             f"{width}x{height}: sizes must match.")
        masks.append((frame[..., :3].max(axis=-1) > PAINTED).astype(np.uint8) * 255)
    return masks


def _masks_clip(path: Path, clip: Clip, what: str) -> Clip:
    """The mask frames at the clip's source indices; the mask clip must have as many frames as the video."""
    def same_frames(total: int) -> list[int]:
        if total != clip.total:
            raise InputError(f"{what} '{path.name}' has {total} frames but the video has {clip.total}: give one mask "
                             "per video frame, or a single mask picture for all frames.")
        return clip.indices

    return _read(path, same_frames, what)


def mask_sequence(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The frames as RGBA with the given masks as alpha."""
    return [np.dstack([frame[..., :3], mask]) for frame, mask in zip(frames, masks)]
