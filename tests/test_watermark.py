"""The invisible watermark: embedding as sgm's helper does, reading it back with detect.py's decoder and thresholds
from pictures and videos (bounded cost, clear refusals), the `watermark` command and the check panel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Engine, EngineConfig, media
from engine.__main__ import main
from engine.errors import InputError
from engine.limits import Limits, applied
from engine.watermark import (BITS, check_file, embed_watermark, embed_watermark_uint8, matching_bits, verdict)

SIZE = 512
NO_WATERMARK = "No watermark detected"
VERY_LIKELY = "Very likely watermarked"


def noise_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def textured_frame(seed: int = 1) -> np.ndarray:
    """Smooth colour gradients with a little fine grain: a picture whose mark survives H.264 (see the README)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.stack([0.5 + 0.3 * np.sin(6 * x + 2 * y), 0.5 + 0.3 * np.cos(5 * y - x), 0.3 + 0.4 * x * y], -1)
    grain = 0.1 * np.random.default_rng(seed).standard_normal(base.shape)
    return (np.clip(base + grain, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def marked() -> np.ndarray:
    return embed_watermark_uint8(noise_frame()[None])[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, marked: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("watermark")
    paths = {"marked": folder / "marked.png", "unmarked": folder / "unmarked.png", "small": folder / "small.png",
             "broken": folder / "broken.png"}
    media.write_png(paths["marked"], marked)
    media.write_png(paths["unmarked"], textured_frame())
    media.write_png(paths["small"], noise_frame()[:200, :300])
    paths["broken"].write_bytes(b"not a picture")
    return paths


def test_message_is_the_originals_48_bits() -> None:
    # sgm/inference/helpers.py and scripts/demo/detect.py@0ad7de9a5cb5 spell it out in binary
    assert "".join(map(str, BITS)) == "101100111110110010010000011110111011000110011110"


def test_verdicts_use_the_detectors_thresholds() -> None:
    assert [verdict(n).split(".")[0] for n in (0, 27, 28, 33, 34, 35, 36, 48)] == [
        NO_WATERMARK, NO_WATERMARK, "Partial watermark match", "Partial watermark match", "Likely watermarked",
        "Likely watermarked", VERY_LIKELY, VERY_LIKELY]


def test_a_marked_512_frame_decodes_to_the_48_bits(files: dict[str, Path]) -> None:
    found = check_file(files["marked"])
    assert (found.bits, found.video) == (48, False)
    assert found.verdict.startswith(VERY_LIKELY)


def test_an_unmarked_frame_has_no_watermark(files: dict[str, Path]) -> None:
    assert check_file(files["unmarked"]).verdict == NO_WATERMARK
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)  # every block reads 0: only the message's zero bits match
    assert matching_bits(flat) == BITS.count(0) == 21


def test_embedding_keeps_layout_range_and_is_what_the_uint8_writer_rounds() -> None:
    samples = torch.from_numpy(noise_frame()[None, None]).movedim(-1, -3).double() / 255  # [1, 1, 3, H, W]
    out = embed_watermark(samples)
    assert out.shape == samples.shape and out.dtype == torch.float64
    assert 0 <= out.min() and out.max() <= 1 and not torch.equal(out, samples)
    # the uint8 entry point is the float one on frames / 255 and the script's truncating cast
    expected = (embed_watermark(samples.float()).movedim(-3, -1) * 255).numpy().astype(np.uint8)[0]
    assert np.array_equal(embed_watermark_uint8(noise_frame()[None]), expected)


def test_too_small_pictures_get_a_clear_message(files: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"300x200 \(60,000 pixels\).*256x256"):
        check_file(files["small"])
    with pytest.raises(InputError, match="256x256"):
        embed_watermark_uint8(noise_frame()[:200, :200][None])


def test_unreadable_and_unknown_files_are_input_errors(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="broken.png"):
        check_file(files["broken"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a picture nor a video"):
        check_file(tmp_path / "notes.txt")
    with applied(Limits(max_image_pixels=100_000)), pytest.raises(InputError, match="too large"):
        check_file(files["marked"])


def test_h264_round_trip_at_our_crf(tmp_path: Path) -> None:
    """Measured, not hoped: a textured frame keeps a 'very likely' count through engine.media's H.264 writer."""
    frame = embed_watermark_uint8(textured_frame()[None])[0]
    assert matching_bits(frame) >= 40  # 45 measured
    media.write_mp4(tmp_path / "marked.mp4", iter([frame] * 10), fps=10)
    found = check_file(tmp_path / "marked.mp4")
    assert found.video and len(found.frames) == 8
    assert found.bits >= 36 and found.verdict.startswith(VERY_LIKELY)  # 46 measured at CRF 18
    assert "median of 8 frames" in found.summary()


def test_a_video_is_sampled_within_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media.write_mp4(tmp_path / "clip.mp4", iter([textured_frame()] * 12), fps=10)
    with applied(Limits(max_video_frames=4)):
        assert len(check_file(tmp_path / "clip.mp4").frames) == 4  # only the first 4 frames are looked at

    def no_decoding(path: Path):
        raise AssertionError("decoded before the size was checked")

    monkeypatch.setattr(media, "iter_video", no_decoding)
    with applied(Limits(max_image_pixels=100_000)), pytest.raises(InputError, match="megapixels"):
        check_file(tmp_path / "clip.mp4")


def test_cli_prints_each_file_and_exits_by_readability(files: dict[str, Path], capsys: pytest.CaptureFixture,
                                                       tmp_path: Path) -> None:
    engine_args = ["--offline", "--cache-dir", str(tmp_path / "hub")]
    code = main(["watermark", str(files["marked"]), str(files["unmarked"]), *engine_args])
    out, err = capsys.readouterr()
    assert code == 0 and not err
    assert f"{files['marked']}: 48/48 bits match the watermark: {VERY_LIKELY}" in out
    assert f"{files['unmarked']}: " in out and NO_WATERMARK in out
    code = main(["watermark", str(files["broken"]), str(files["small"]), str(files["marked"]), *engine_args])
    out, err = capsys.readouterr()
    assert code == 2
    assert "48/48" in out and "broken.png" in err and "256x256" in err


def test_panel_checks_an_upload_through_the_api(files: dict[str, Path], tmp_path: Path) -> None:
    import gradio as gr
    from gradio_client import Client, handle_file

    from tabs import watermark_check

    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tmp_path / "hub", offline=True))
    with gr.Blocks() as demo:
        watermark_check.build(engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        text = client.predict(file=handle_file(str(files["marked"])), api_name="/check_watermark")
        assert "marked.png" in text and "48/48" in text and VERY_LIKELY in text
        with pytest.raises(Exception, match="256x256"):
            client.predict(file=handle_file(str(files["small"])), api_name="/check_watermark")
    finally:
        demo.close()
