"""Media round trips: mp4 (frames, fps, size, audio), webm alpha, PNG RGBA, audio, and bad files."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from engine import media
from engine.errors import InputError


def gradient_frames(count: int, h: int = 33, w: int = 47) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 20) % 256, np.uint8) for i in range(count)]


def test_mp4_round_trip_frames_fps_even_size_and_audio(tmp_path: Path) -> None:
    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    path = tmp_path / "out.mp4"
    assert media.write_mp4(path, gradient_frames(12), fps=24, audio=(tone, rate)) == 12
    info = media.video_info(path)
    assert (info.width, info.height) == (48, 34) and info.fps == pytest.approx(24)
    frames, fps = media.read_video(path)
    assert len(frames) == 12 and frames[5].shape == (34, 48, 3)
    assert abs(int(frames[5][10, 10, 0]) - 100) <= 3  # content survives encoding
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert len(container.streams.audio) == 1
    audio = media.read_audio(path, 8000)
    assert 0.25 < np.abs(audio).max() < 0.35 and abs(len(audio) - 4000) < 800  # 0.5 s at 8 kHz, AAC priming aside
    rate_found, seconds = media.audio_info(path)
    assert rate_found == rate and 0.4 < seconds < 0.6


def test_read_audio_stops_decoding_past_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    rate = 8000
    with av.open(str(path), "w") as container:  # 2 s of PCM
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2 * rate), np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert len(media.read_audio(path, rate, max_seconds=3)) == 2 * rate
    with pytest.raises(InputError, match="longer than 1 s"):
        media.read_audio(path, rate, max_seconds=1)


def test_audio_info_is_none_without_an_audio_track_and_refuses_a_corrupt_file(tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    media.write_mp4(silent, gradient_frames(4), fps=8)
    assert media.audio_info(silent) is None
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="corrupt"):
        media.audio_info(corrupt)


def test_resampling_to_a_lower_fps_keeps_duration(tmp_path: Path) -> None:
    path = tmp_path / "in.mp4"
    media.write_mp4(path, gradient_frames(30), fps=30)
    frames, fps = media.read_video(path, fps=10)
    assert fps == 10 and len(frames) == 10
    assert media.resample_indices(30, 30, 10) == list(range(0, 30, 3))
    assert media.resample_indices(4, 10, 20) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_transform_runs_on_each_decoded_frame_before_resampling(tmp_path: Path) -> None:
    path = tmp_path / "in.mp4"
    media.write_mp4(path, gradient_frames(30), fps=30)
    seen = []

    def shrink(frame: np.ndarray) -> np.ndarray:
        seen.append(frame.shape)
        return frame[::4, ::4].copy()

    frames, fps = media.read_video(path, fps=10, transform=shrink)
    full, _ = media.read_video(path, fps=10)
    assert len(seen) == 30 and fps == 10 and len(frames) == 10
    assert all(shape == full[0].shape for shape in seen)
    for small, big in zip(frames, full):
        np.testing.assert_array_equal(small, big[::4, ::4])


def test_webm_keeps_alpha(tmp_path: Path) -> None:
    frames = [np.dstack([np.full((32, 32, 3), 200, np.uint8), np.full((32, 32), a, np.uint8)]) for a in (0, 128, 255)]
    path = tmp_path / "alpha.webm"
    assert media.write_webm_alpha(path, frames, fps=10) == 3
    decoder = av.CodecContext.create("libvpx-vp9", "r")
    alphas = []
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            alphas += [int(f.to_ndarray(format="rgba")[16, 16, 3]) for f in decoder.decode(packet)]
    assert len(alphas) == 3 and abs(alphas[1] - 128) < 8 and alphas[0] < 8 and alphas[2] > 247


def test_png_keeps_rgba_and_sequence_names(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (20, 30, 4), dtype=np.uint8)
    assert media.write_png_sequence(tmp_path / "seq", [rgba, rgba]) == 2
    back = media.read_image(tmp_path / "seq" / "000001.png")
    assert back.shape == (20, 30, 4) and np.array_equal(back, rgba)
    assert media.read_image(tmp_path / "seq" / "000000.png", keep_alpha=False).shape == (20, 30, 3)


@pytest.mark.parametrize("content, reader", [
    (b"", media.read_image), (b"not an image at all", media.read_image),
    (b"\x00\x00\x00\x18ftypmp42 broken", media.read_video), (b"garbage", media.read_audio),
])
def test_corrupt_or_empty_files_are_input_errors(tmp_path: Path, content: bytes, reader) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.bin"):
        reader(path)


def test_image_without_video_stream_and_missing_file(tmp_path: Path) -> None:
    png = tmp_path / "still.png"
    media.write_png(png, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="still.png"):
        media.read_audio(png)
    with pytest.raises(InputError, match="does not exist"):
        media.read_video(tmp_path / "missing.mp4")


def test_fit_modes_and_compositing() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # centre half is white
    assert media.fit(img, 100, 100, "crop").min() == 255  # centre crop keeps only the white part
    padded = media.fit(img, 100, 100, "pad")
    assert padded.shape == (100, 100, 3) and padded[0].max() == 0 and padded[50, 50].min() == 255
    premul = np.zeros((2, 2, 4), np.float32)
    premul[0, 0] = [0.5, 0.0, 0.0, 0.5]  # half-transparent red
    out = media.composite(premul, (0, 0, 255))
    assert out[0, 0].tolist() == [128, 0, 128] and out[1, 1].tolist() == [0, 0, 255]
    assert media.unpremultiply(premul)[0, 0].tolist() == [255, 0, 0, 128]
    assert media.parse_colour("#0f0") == (0, 255, 0)
    with pytest.raises(InputError, match="#RRGGBB"):
        media.parse_colour("green")


def test_a_mask_is_what_is_painted_bright_and_opaque_at_the_pictures_size(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[1:3, 1:3] = 255  # painted white and opaque
    rgba[0, 5, :3] = 255  # white but transparent: not painted
    path = tmp_path / "mask.png"
    media.write_png(path, rgba)
    mask = media.read_mask(path, (4, 6), "Motion brush", "the picture", "Paint something.")
    assert mask.dtype == np.uint8 and mask.sum() == 4 * 255 and mask[1:3, 1:3].all()
    with pytest.raises(InputError, match="is 6x4 but the picture is 5x4"):
        media.read_mask(path, (4, 5), "Motion brush", "the picture", "Paint something.")
    media.write_png(path, np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(InputError, match=r"'mask.png' is empty \(nothing painted white\). Paint something."):
        media.read_mask(path, (4, 6), "Motion brush", "the picture", "Paint something.")
