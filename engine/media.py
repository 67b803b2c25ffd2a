"""Reading and writing images, video and audio; resizing and compositing.

Video goes through PyAV, which ships its own FFmpeg (H.264 via libx264, VP9 via libvpx, AAC): nothing to install.
Every reader turns a bad file into an InputError naming the file and what to do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine import limits
from engine.errors import InputError

IMAGE_HINT = "Use a PNG, JPEG or WebP image."
VIDEO_HINT = "Use an MP4, WebM, MOV, MKV, AVI or GIF video."


def _name(path: str | Path) -> str:
    return Path(path).name


# ---------------------------------------------------------------------------------------------------- images

def read_image(path: str | Path, *, keep_alpha: bool = True, what: str = "Image") -> np.ndarray:
    """HxWx3 (or HxWx4 when the file has transparency and keep_alpha) uint8, EXIF orientation applied.

    Pictures over the engine's pixel limit are refused from their header, before anything is decoded. `what` names
    the input in that message ("Reference image", "Mask")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image '{_name(path)}' does not exist. {IMAGE_HINT}")
    try:
        with _open_checked(path, what) as img:
            img = ImageOps.exif_transpose(img)
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            mode = "RGBA" if keep_alpha and has_alpha else "RGB"
            array = np.asarray(img.convert(mode)).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"Could not read '{_name(path)}' as an image ({exc.__class__.__name__}). {IMAGE_HINT}") from exc
    if array.size == 0:
        raise InputError(f"Image '{_name(path)}' is empty (0 pixels). {IMAGE_HINT}")
    return array


def _open_checked(path: Path, what: str) -> Image.Image:
    """Image.open (which reads only the header) and the pixel-limit check; the caller decodes."""
    max_pixels = limits.current().max_image_pixels
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check must not undercut an operator's higher limit
    try:
        img = Image.open(path)
    except Image.DecompressionBombError:
        raise _too_large(path, what, None, max_pixels) from None
    if img.size[0] * img.size[1] > max_pixels:
        img.close()
        raise _too_large(path, what, img.size, max_pixels)
    return img


def _too_large(path: Path, what: str, size: tuple[int, int] | None, max_pixels: int) -> InputError:
    found = f"{size[0]} x {size[1]}, " if size else ""
    return InputError(f"{what} '{_name(path)}' is too large ({found}more than {max_pixels / 1e6:g} megapixels; the "
                      "limit is set with --max-image-megapixels). Downscale it and upload it again: the models work "
                      "on pictures of well under one megapixel.")


def write_png(path: str | Path, array: np.ndarray) -> Path:
    path = Path(path)
    Image.fromarray(np.ascontiguousarray(array)).save(path, optimize=False)
    return path


def resize(array: np.ndarray, width: int, height: int, method: str = "auto") -> np.ndarray:
    """auto: OpenCV area when shrinking, bilinear when enlarging. bicubic: Pillow's default `Image.resize`
    filter, which several original research demos used (match it where fidelity to them matters)."""
    if array.shape[1] == width and array.shape[0] == height:
        return array
    if method == "bicubic":
        return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC))
    import cv2

    shrinking = width * height < array.shape[0] * array.shape[1]
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fit(array: np.ndarray, width: int, height: int, mode: str = "crop", fill: int | Sequence[int] = 0,
        method: str = "auto") -> np.ndarray:
    """Bring an image to width x height: 'crop' (centre crop, keep aspect), 'pad' (letterbox with `fill`), 'stretch'."""
    h, w = array.shape[:2]
    if mode == "stretch":
        return resize(array, width, height, method)
    if mode == "crop":
        scale = max(width / w, height / h)
    elif mode == "pad":
        scale = min(width / w, height / h)
    else:
        raise InputError(f"Unknown fit mode '{mode}'. Use crop, pad or stretch.")
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = resize(array, new_w, new_h, method)
    canvas = np.empty((height, width) + array.shape[2:], dtype=array.dtype)
    canvas[...] = fill
    # Offsets of the scaled image inside the canvas (negative = cropped away).
    ox, oy = (width - new_w) // 2, (height - new_h) // 2
    src_x0, src_y0 = max(0, -ox), max(0, -oy)
    dst_x0, dst_y0 = max(0, ox), max(0, oy)
    cw, ch = min(new_w - src_x0, width - dst_x0), min(new_h - src_y0, height - dst_y0)
    canvas[dst_y0:dst_y0 + ch, dst_x0:dst_x0 + cw] = scaled[src_y0:src_y0 + ch, src_x0:src_x0 + cw]
    return canvas


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (clipped) -> uint8, rounded to nearest."""
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class Backdrop:
    """A background for `composite`: a colour, or an RGB uint8 image centre-cropped to the frame size.

    The fitted image is kept for the last frame size, so the frames of a run (which share one size) fit a large
    picture once, not once per frame."""

    def __init__(self, background: np.ndarray | Sequence[int]) -> None:
        self.background = background
        self._fitted: tuple[tuple[int, int], np.ndarray] | None = None

    def at(self, height: int, width: int) -> np.ndarray | Sequence[int]:
        """The background for a height x width frame."""
        image = self.background
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[:2] == (height, width):
            return image
        if self._fitted is None or self._fitted[0] != (height, width):
            self._fitted = (height, width), fit(image[..., :3], width, height, "crop")
        return self._fitted[1]


def composite(premultiplied: np.ndarray, background: Backdrop | np.ndarray | Sequence[int] | None) -> np.ndarray:
    """Premultiplied float RGBA [0,1] over a background (RGB uint8 image or colour); None = black. -> uint8 RGB.

    Pass a `Backdrop` when compositing many frames over one picture."""
    rgb, alpha = premultiplied[..., :3], premultiplied[..., 3:4]
    if background is None:
        out = rgb
    else:
        backdrop = background if isinstance(background, Backdrop) else Backdrop(background)
        bg = np.asarray(backdrop.at(*rgb.shape[:2]), dtype=np.float32) / 255.0
        out = rgb + (1.0 - alpha) * bg[..., :3]
    return to_uint8(out)


def unpremultiply(premultiplied: np.ndarray) -> np.ndarray:
    """Premultiplied float RGBA [0,1] -> straight-alpha uint8 RGBA (for PNG/WebM with transparency)."""
    alpha = premultiplied[..., 3:4]
    rgb = np.where(alpha > 1e-6, premultiplied[..., :3] / np.maximum(alpha, 1e-6), 0.0)
    return to_uint8(np.concatenate([rgb, alpha], axis=-1))


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#RRGGBB' or '#RGB' -> (r, g, b)."""
    value = text.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    try:
        if len(value) != 6:
            raise ValueError
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    except ValueError:
        raise InputError(f"'{text}' is not a colour. Use #RRGGBB, e.g. #00ff00.") from None


def hstack(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Side-by-side grid: every panel resized to the first panel's height, RGB uint8."""
    height = frames[0].shape[0]
    panels = []
    for frame in frames:
        frame = frame[..., :3]
        if frame.shape[0] != height:
            frame = resize(frame, max(1, round(frame.shape[1] * height / frame.shape[0])), height)
        panels.append(frame)
    return np.concatenate(panels, axis=1)


# ---------------------------------------------------------------------------------------------------- video

@dataclass
class VideoInfo:
    fps: float
    frames: int  # container's estimate; 0 when unknown
    width: int
    height: int


def _open_video(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Video '{_name(path)}' does not exist. {VIDEO_HINT}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"Could not open '{_name(path)}' as a video (corrupt or not a video). {VIDEO_HINT}") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"'{_name(path)}' has no video stream. {VIDEO_HINT}")
    return container


def video_info(path: str | Path) -> VideoInfo:
    with _open_video(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(float(rate) if rate else 25.0, int(stream.frames or 0),
                         stream.codec_context.width, stream.codec_context.height)


def iter_video(path: str | Path) -> Iterator[np.ndarray]:
    """Decode every frame as HxWx3 uint8 RGB, one at a time."""
    import av

    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise InputError(f"'{_name(path)}' is corrupt: decoding failed part-way ({exc}). Re-export the video.") from exc
    finally:
        container.close()


def count_video_frames(path: str | Path, stop: int) -> int:
    """Frames of the first video stream, up to `stop`, counted from its packets without decoding any."""
    import av

    count = 0
    if stop <= 0:
        return count
    with _open_video(path) as container:
        try:
            for packet in container.demux(container.streams.video[0]):
                count += packet.size > 0  # the demuxer ends with an empty packet
                if count >= stop:
                    break
        except av.FFmpegError as exc:
            raise InputError(f"'{_name(path)}' is corrupt: reading it failed part-way ({exc}). Re-export the video.") from exc
    return count


def resample_indices(count: int, source_fps: float, target_fps: float | None) -> list[int]:
    """Source frame index shown at each output frame when converting source_fps -> target_fps."""
    if not target_fps or abs(target_fps - source_fps) < 1e-6:
        return list(range(count))
    out_count = resampled_count(count, source_fps, target_fps)
    return [min(count - 1, math.floor(k * source_fps / target_fps + 1e-9)) for k in range(out_count)]


def resampled_count(count: int, source_fps: float, target_fps: float | None) -> int:
    """How many frames `count` source frames become at target_fps (see resample_indices)."""
    if not target_fps or abs(target_fps - source_fps) < 1e-6:
        return count
    return max(1, math.floor(count * target_fps / source_fps + 1e-9)) if count else 0


def read_video(path: str | Path, fps: float | None = None, max_frames: int | None = None,
               transform: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[list[np.ndarray], float]:
    """All frames (optionally resampled to `fps`, capped to max_frames) and the resulting frame rate.

    `transform` (a resize, say) runs on each frame as it is decoded, so only transformed frames are held."""
    source_fps = video_info(path).fps
    frames = [transform(frame) if transform else frame for frame in iter_video(path)]
    if not frames:
        raise InputError(f"'{_name(path)}' contains no video frames. {VIDEO_HINT}")
    frames = [frames[i] for i in resample_indices(len(frames), source_fps, fps)]
    if max_frames is not None:
        frames = frames[:max_frames]
    return frames, float(fps or source_fps)


def _even(n: int) -> int:
    return n + (n % 2)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, _even(h) - h), (0, _even(w) - w), (0, 0)), mode="edge")


def _encode_video(container, frames: Iterable[np.ndarray], fps: float, codec: str, pix_fmt: str, layout: str,
                  options: dict[str, str]) -> tuple[int, Fraction]:
    """Encode frames (padded to even sizes) into a new stream of `container`; the stream opens on the first frame.
    Returns (frame count, frame rate)."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    channels = 4 if layout == "rgba" else 3
    stream = None
    count = 0
    for frame in frames:
        frame = _pad_even(np.ascontiguousarray(frame[..., :channels]))
        if stream is None:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = frame.shape[1], frame.shape[0]
            stream.pix_fmt = pix_fmt
            stream.options = options
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=layout)):
            container.mux(packet)
        count += 1
    if stream is None:
        raise InputError("No frames to write: the result is empty. Check the frame range.")
    for packet in stream.encode():
        container.mux(packet)
    return count, rate


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, audio: tuple[np.ndarray, int] | None = None,
              crf: int = 18) -> int:
    """Browser-playable H.264 yuv420p MP4 (odd sizes padded to even), optional mono AAC track. Returns frame count."""
    import av

    with av.open(str(path), mode="w") as container:
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=audio[1])
            audio_stream.layout = "mono"
        count, rate = _encode_video(container, frames, fps, "libx264", "yuv420p", "rgb24",
                                    {"crf": str(crf), "preset": "medium", "movflags": "+faststart"})
        if audio is not None:
            _encode_audio(container, audio_stream, audio, duration=count / float(rate))
    return count


def _encode_audio(container, stream, audio: tuple[np.ndarray, int], duration: float) -> None:
    """Mux mono float samples, trimmed to the video's duration."""
    import av

    samples, rate = audio
    samples = np.asarray(samples, dtype=np.float32)[: int(round(duration * rate))]
    chunk = 1024
    for start in range(0, len(samples), chunk):
        piece = samples[start:start + chunk]
        frame = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_webm_alpha(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """VP9 WebM keeping transparency (straight-alpha RGBA uint8 frames). Returns frame count."""
    import av

    with av.open(str(path), mode="w", format="webm") as container:
        count, _ = _encode_video(container, frames, fps, "libvpx-vp9", "yuva420p", "rgba",
                                 {"crf": "24", "b": "0", "row-mt": "1"})
    return count


def write_png_sequence(folder: str | Path, frames: Iterable[np.ndarray]) -> int:
    """folder/000000.png, 000001.png, ... Returns frame count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(frames, start=1):
        write_png(folder / f"{count - 1:06d}.png", frame)
    return count


# ---------------------------------------------------------------------------------------------------- audio

def read_mask(path: str | Path, shape: tuple[int, int], what: str, picture: str, empty_hint: str) -> np.ndarray:
    """A painted mask -> uint8 HxW, 255 where painted (bright, and opaque if it has transparency). It must have the
    picture's size (`picture` names it in the message) and something painted (`empty_hint` says what to paint)."""
    pixels = read_image(path, what=what)
    painted = pixels[..., :3].max(axis=-1) > 127
    if pixels.shape[-1] == 4:
        painted &= pixels[..., 3] > 127
    name = _name(Path(path))
    if painted.shape != tuple(shape):
        raise InputError(f"{what} '{name}' is {painted.shape[1]}x{painted.shape[0]} but {picture} is "
                         f"{shape[1]}x{shape[0]}: paint it on the same picture.")
    if not painted.any():
        raise InputError(f"{what} '{name}' is empty (nothing painted white). {empty_hint}")
    return painted.astype(np.uint8) * 255


def audio_info(path: str | Path) -> tuple[int, float] | None:
    """(sample rate, seconds) of a media file's first audio stream, or None when it has none. Reads headers only;
    an unreadable file is an InputError."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"Could not open '{_name(path)}' (corrupt or not a media file).") from exc
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = (container.duration or 0) / 1_000_000
        return int(stream.rate or stream.codec_context.sample_rate), seconds


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from any audio (or video-with-audio) file. With `max_seconds`, decoding
    stops (InputError) as soon as the samples pass that length, whatever the header claimed: the cost stays bounded."""
    import av

    path = Path(path)
    hint = "Use a WAV, MP3, M4A, FLAC or OGG file."
    if not path.is_file():
        raise InputError(f"Audio '{_name(path)}' does not exist. {hint}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"Could not open '{_name(path)}' as audio (corrupt or not audio). {hint}") from exc
    with container:
        if not container.streams.audio:
            raise InputError(f"'{_name(path)}' has no audio track. {hint}")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, count = [], 0
        bound = None if max_seconds is None else int(max_seconds * sample_rate) + 1
        try:
            for frame in container.decode(container.streams.audio[0]):
                decoded = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                chunks += decoded
                count += sum(len(c) for c in decoded)
                if bound is not None and count > bound:
                    raise InputError(f"'{_name(path)}' lasts longer than {max_seconds:g} s (found while decoding; "
                                     "its header said less). Trim or split it.")
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.FFmpegError as exc:
            raise InputError(f"'{_name(path)}' is corrupt: audio decoding failed ({exc}).") from exc
    if not chunks:
        raise InputError(f"'{_name(path)}' contains no audio samples. {hint}")
    return np.concatenate(chunks).astype(np.float32)
