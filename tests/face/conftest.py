"""Face task test helpers: a fake landmarker that reads a synthetic face's motion from the frame's colour (no
mediapipe model, no network), synthetic 68-point faces, driving videos with an audio track, and speech-like audio."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import media
from engine.pipelines.face import landmarks as face_landmarks
from engine.pipelines.face.landmarks import MEDIAPIPE_TO_68, FaceDetection


def face68(cx: float, cy: float, size: float, mouth: float = 0.0) -> np.ndarray:
    """A plausible 68-point face (jaw, brows, nose, eyes, lips) of width ~2*size centred at (cx, cy); `mouth` opens
    the lips by that many face sizes."""
    def arc(start: float, stop: float, count: int, rx: float, ry: float, ox: float, oy: float) -> np.ndarray:
        angles = np.linspace(start, stop, count)
        return np.stack([ox + rx * np.cos(angles), oy + ry * np.sin(angles)], axis=1)

    jaw = arc(np.pi, 0, 17, 1.0, -1.1, 0, 0.1)[::-1] * [-1, -1] + [0, 0.2]
    brow_r, brow_l = arc(np.pi, np.pi / 2, 5, 0.35, -0.12, -0.4, -0.45), arc(np.pi / 2, 0, 5, 0.35, -0.12, 0.4, -0.45)
    nose = np.stack([np.zeros(4), np.linspace(-0.3, 0.1, 4)], axis=1)
    nostrils = np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, 0.2)], axis=1)
    eye_r = arc(np.pi, -np.pi, 7, 0.15, 0.06, -0.4, -0.25)[:6]
    eye_l = arc(np.pi, -np.pi, 7, 0.15, 0.06, 0.4, -0.25)[:6]
    outer = arc(np.pi, -np.pi, 13, 0.35, 0.12 + mouth / 2, 0, 0.55)[:12]
    inner = arc(np.pi, -np.pi, 9, 0.25, 0.04 + mouth / 2, 0, 0.55)[:8]
    unit = np.concatenate([jaw, brow_r, brow_l, nose, nostrils, eye_r, eye_l, outer, inner])
    assert unit.shape == (68, 2)
    return (unit * size + [cx, cy]).astype(np.float32)


def face478(points68: np.ndarray) -> np.ndarray:
    """478 mediapipe-like points whose 68-point subset is `points68` (the rest scattered over the face)."""
    rng = np.random.default_rng(0)
    centre, size = points68.mean(axis=0), np.ptp(points68, axis=0)
    full = (centre + rng.uniform(-0.4, 0.4, size=(478, 2)) * size).astype(np.float32)
    full[list(MEDIAPIPE_TO_68)] = points68
    return full


class FakeLandmarker:
    """Reads a synthetic face from a frame's colour: a frame that is almost black has no face; otherwise the face
    sits at the frame's centre, shifted right by (mean red - 128) / 4 pixels, mouth opened by mean green / 1000."""

    def __init__(self) -> None:
        self.calls: list[int | None] = []
        self.closed = False

    def detect(self, frame: np.ndarray, timestamp_ms: int | None = None) -> FaceDetection | None:
        self.calls.append(timestamp_ms)
        if frame.mean() < 8:
            return None
        height, width = frame.shape[:2]
        red, green = float(frame[..., 0].mean()), float(frame[..., 1].mean())
        points = face68(width / 2 + (red - 128) / 4, height / 2, min(width, height) / 4, green / 1000)
        full = face478(points)
        depth = ((full - full.mean(axis=0)) ** 2).sum(axis=1) / (4 * min(width, height))  # the middle nearest
        return FaceDetection(points=full, depth=(depth - depth.mean()).astype(np.float32),
                             transform=np.eye(4, dtype=np.float32))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_landmarker(monkeypatch: pytest.MonkeyPatch) -> list[FakeLandmarker]:
    """Every landmarker the face task opens is a FakeLandmarker (listed here as they are made)."""
    made: list[FakeLandmarker] = []

    def open_fake(task_file: Any) -> FakeLandmarker:
        made.append(FakeLandmarker())
        return made[-1]

    monkeypatch.setattr(face_landmarks, "open_landmarker", open_fake)
    return made


def write_portrait(path: Path, size: tuple[int, int] = (96, 80)) -> Path:
    """A grey picture (the fake landmarker finds a face in anything not black)."""
    width, height = size
    media.write_png(path, np.full((height, width, 3), 128, np.uint8))
    return path


def write_driving(path: Path, reds: list[int], fps: float = 25, size: int = 64,
                  audio_seconds: float | None = None, sample_rate: int = 16000) -> Path:
    """A driving video: frame k is filled with red reds[k] (0 = a black frame: no face), green 40; with a sine tone
    of `audio_seconds` when given."""
    frames = [np.zeros((size, size, 3), np.uint8) if red == 0 else
              np.full((size, size, 3), (red, 40, 90), np.uint8) for red in reds]
    audio = None
    if audio_seconds is not None:
        t = np.arange(int(audio_seconds * sample_rate)) / sample_rate
        audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate
    media.write_mp4(path, frames, fps, audio=audio)
    return path


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like signal: a 120 Hz voice with harmonics and formant-like peaks, opened and closed in 4 Hz
    syllables, with breath noise (float32 in [-1, 1])."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    pitch = 120 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k * (1 + 2 * np.exp(-((k * 120 - 700) / 300) ** 2)) for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = voice * syllables + 0.02 * rng.standard_normal(len(t))
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def write_speech(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Speech-like audio in a file (the container and codec from the suffix: .wav PCM, .m4a AAC, .flac, .mp3)."""
    import av

    samples = speech_like(seconds, rate)
    with av.open(str(path), mode="w") as container:
        codec = {".wav": "pcm_s16le", ".m4a": "aac", ".mp3": "libmp3lame", ".flac": "flac"}[path.suffix]
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        layout_format = "s16" if codec == "pcm_s16le" else stream.codec_context.format.name
        frame = av.AudioFrame.from_ndarray(_as_format(samples, layout_format)[None], format=layout_format,
                                           layout="mono")
        frame.sample_rate = rate
        for packet in _encode_all(stream, frame):
            container.mux(packet)
    return path


def _as_format(samples: np.ndarray, name: str) -> np.ndarray:
    if name.startswith("s16"):
        return (samples * 32767).astype(np.int16)
    if name.startswith("s32"):
        return (samples * 2 ** 31 * 0.999).astype(np.int32)
    return samples


def _encode_all(stream: Any, frame: Any) -> list:
    """Encode one long frame in codec-sized pieces (AAC and others take fixed frame sizes)."""
    import av

    size = stream.codec_context.frame_size or frame.samples
    data = frame.to_ndarray()
    packets = []
    for start in range(0, frame.samples, size):
        piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start:start + size]),
                                           format=frame.format.name, layout="mono")
        piece.sample_rate, piece.pts = frame.sample_rate, start
        packets += stream.encode(piece)
    return packets + stream.encode(None)


def audio_seconds(path: Path) -> float | None:
    """The length of a file's first audio stream from its header (None: no audio stream)."""
    found = media.audio_info(path)
    return None if found is None else found[1]
