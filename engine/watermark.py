"""Stability AI's invisible watermark: embedded as the original SV3D sampling script does, and read back from any file.

The original (generative-models @ 0ad7de9a5cb5) marks every frame that scripts/sampling/simple_video_sample.py writes
(SVD and SV3D; the SV4D scripts do not) with sgm/inference/helpers.py's `embed_watermark`, and ships
scripts/demo/detect.py to read the mark. Both use the `invisible-watermark` package (imported lazily, on first use):
a fixed 48-bit message in the DWT of the U channel ("dwtDct"), on BGR pixels in [0, 255].

Reproduced on purpose, though it weakens the mark: sgm embeds float pixels, for which OpenCV's YUV chroma offset is 0.5,
while detect.py reads uint8 files (offset 128), so blocks whose largest coefficient is negative read back flipped, and
the clamp to [0, 1] wipes the mark off white areas. Smooth frames and objects on white (SV3D's) decode far below 48
bits, from the original as from us; see the README for measured figures.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from engine import limits, media
from engine.archives import IMAGE_EXTENSIONS
from engine.errors import InputError

MESSAGE = 0xB3EC907BB19E  # sgm/inference/helpers.py@0ad7de9a5cb5 WATERMARK_MESSAGE ("chosen at random")
BITS = tuple(int(bit) for bit in f"{MESSAGE:048b}")  # bin(MESSAGE)[2:]: the top bit is 1, so exactly 48 bits
METHOD = "dwtDct"  # helpers.py and detect.py@0ad7de9a5cb5
MIN_PIXELS = 256 * 256  # imwatermark/watermark.py (invisible-watermark 0.2.0) refuses rows * cols below this
# scripts/demo/detect.py@0ad7de9a5cb5 MATCH_VALUES: the verdict for at most this many matching bits
VERDICTS = (
    (27, "No watermark detected"),
    (33, "Partial watermark match. Cannot determine with certainty."),
    (35, 'Likely watermarked. In our test 0.02% of real images were falsely detected as "Likely watermarked"'),
    (48, 'Very likely watermarked. In our test no real images were falsely detected as "Very likely watermarked"'),
)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif")
VIDEO_SAMPLES = 8  # frames read from a video, evenly spread (detect.py itself reads only images)
FILE_HINT = "Give a PNG, JPEG, WebP or BMP picture, or a video (MP4, WebM, MOV, MKV, AVI, M4V, GIF)."


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    try:
        import imwatermark
    except ImportError as exc:
        raise ImportError("The watermark needs the invisible-watermark package (requirements.txt)") from exc
    return imwatermark


def _check_size(width: int, height: int, name: str) -> None:
    if width * height < MIN_PIXELS:
        raise InputError(f"{name} is {width}x{height} ({width * height:,} pixels): the watermark cannot be read from "
                         f"pictures under {MIN_PIXELS:,} pixels (256x256), a limit of the invisible-watermark library. "
                         "Check the file at the size it was made (SV3D writes 576x576).")


def embed_watermark(samples: torch.Tensor) -> torch.Tensor:
    """Float RGB [..., 3, H, W] in [0, 1] -> the same marked, clamped to [0, 1]: sgm's WatermarkEmbedder exactly.

    Computed in float32 on the CPU (255 * x, RGB -> BGR, dwtDct per picture, back, / 255, clamp) and returned on the
    input's device and dtype. Call it before any rounding to uint8, as simple_video_sample.py does."""
    *lead, channels, height, width = samples.shape
    if channels != 3:
        raise ValueError(f"embed_watermark takes RGB [..., 3, H, W]; got shape {tuple(samples.shape)}")
    _check_size(width, height, "The picture to watermark")
    encoder = _library().WatermarkEncoder()
    encoder.set_watermark("bits", list(BITS))
    bgr = (255 * samples.detach().float()).cpu().reshape(-1, 3, height, width).permute(0, 2, 3, 1).numpy()[..., ::-1]
    marked = np.empty(bgr.shape, np.float32)
    for k in range(bgr.shape[0]):
        marked[k] = encoder.encode(np.ascontiguousarray(bgr[k]), METHOD)
    rgb = torch.from_numpy(np.ascontiguousarray(marked[..., ::-1])).permute(0, 3, 1, 2)
    out = torch.clamp(rgb / 255, min=0.0, max=1.0).reshape(*lead, 3, height, width)
    return out.to(device=samples.device, dtype=samples.dtype)


def embed_watermark_uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., H, W, 3] -> marked uint8 RGB: embed_watermark on frames / 255, then the original script's
    truncating cast ((x * 255).astype(uint8))."""
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"embed_watermark_uint8 takes uint8 RGB [..., H, W, 3]; got {frames.dtype} {frames.shape}")
    samples = torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float() / 255
    return (embed_watermark(samples).movedim(-3, -1) * 255).numpy().astype(np.uint8)


def matching_bits(frame: np.ndarray) -> int:
    """uint8 RGB [H, W, 3] -> how many of the 48 decoded bits equal the message (detect.py's GetWatermarkMatch, which
    decodes cv2's BGR)."""
    height, width = frame.shape[:2]
    _check_size(width, height, "The picture")
    decoder = _library().WatermarkDecoder("bits", len(BITS))
    decoded = decoder.decode(np.ascontiguousarray(frame[..., 2::-1]), METHOD)
    return int(np.sum(np.asarray(decoded, bool) == np.asarray(BITS, bool)))


def verdict(bits: int) -> str:
    """detect.py's wording for a number of matching bits."""
    return next(text for most, text in VERDICTS if bits <= most)


@dataclass(frozen=True)
class Finding:
    """What one file says: matching bits per frame checked (one for a picture)."""
    path: Path
    frames: tuple[int, ...]
    video: bool

    @property
    def bits(self) -> int:
        """A picture's count; for a video the median over the frames checked, rounded down."""
        return int(np.floor(np.median(self.frames)))

    @property
    def verdict(self) -> str:
        return verdict(self.bits)

    def summary(self) -> str:
        where = ""
        if self.video and len(self.frames) == 1:
            where = " (the video's one frame)"
        elif self.video:
            where = f" (median of {len(self.frames)} frames, from {min(self.frames)} to {max(self.frames)})"
        return f"{self.bits}/{len(BITS)} bits match the watermark{where}: {self.verdict}"


def check_file(path: str | Path) -> Finding:
    """Read a picture, or a few frames of a video, and count the watermark's bits in each. Every cost is checked
    from the file's header before anything is decoded (engine.limits); a bad file is an InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        frame = media.read_image(path, keep_alpha=False, what="Picture")
        _check_size(frame.shape[1], frame.shape[0], f"'{path.name}'")
        return Finding(path, (matching_bits(frame),), video=False)
    if suffix in VIDEO_EXTENSIONS:
        counts = tuple(matching_bits(frame) for frame in _video_samples(path))
        if not counts:
            raise InputError(f"'{path.name}' contains no decodable video frames. {FILE_HINT}")
        return Finding(path, counts, video=True)
    raise InputError(f"'{path.name}' is neither a picture nor a video by its name. {FILE_HINT}")


def _video_samples(path: Path) -> Iterator[np.ndarray]:
    """VIDEO_SAMPLES frames spread over the first max_video_frames, decoding no further than the last one."""
    info = media.video_info(path)
    max_pixels = limits.current().max_image_pixels
    if info.width * info.height > max_pixels:
        raise InputError(f"Video '{path.name}' is {info.width}x{info.height}, more than {max_pixels / 1e6:g} "
                         "megapixels (the limit is set with --max-image-megapixels).")
    _check_size(info.width, info.height, f"Video '{path.name}'")
    total = media.count_video_frames(path, limits.current().max_video_frames)  # packets only: nothing decoded yet
    if total == 0:
        raise InputError(f"'{path.name}' contains no video frames. {FILE_HINT}")
    wanted = sorted(set(np.linspace(0, total - 1, min(VIDEO_SAMPLES, total)).round().astype(int).tolist()))
    frames = media.iter_video(path)
    try:
        for index, frame in enumerate(frames):
            if index in wanted:
                yield frame
            if index >= wanted[-1]:
                return
    finally:
        frames.close()
