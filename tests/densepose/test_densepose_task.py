"""DensePose extraction end to end on the tiny model (published pickle layout, through the Hub cache): the densepose
task through the engine and the CLI, and the pose task given an ordinary video, through the engine and its tab."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Engine, media
from engine.__main__ import main
from engine.errors import InputError
from engine.pipelines.densepose.clip import rendered
from engine.pipelines.densepose.pipeline import DensePosePipeline, resampled_frames
from engine.pipelines.densepose.spec import SPEC
from engine.pipelines.densepose.tiny import PERSON_BIAS, TINY_DETECT_SIZE, person_video, tiny_network
from engine.pipelines.pose.palette import PART_COLOURS

FAST = {"size": 64, "detect_size": TINY_DETECT_SIZE}  # a 128-pixel detection size keeps the tiny runs quick
POSE = {"size": 64, "steps": 1, "context": 3, "overlap": 1, "seed": 3, "detect_size": TINY_DETECT_SIZE}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("densepose_inputs")
    rng = np.random.default_rng(0)
    media.write_png(folder / "reference.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return {"person": person_video(folder / "person.mp4"), "reference": folder / "reference.png"}


def frames_of(path: Path) -> list[np.ndarray]:
    return media.read_video(path)[0]


def only_part_colours(frames: list[np.ndarray]) -> bool:
    colours = {tuple(c) for c in PART_COLOURS.tolist()}
    return all(tuple(c) in colours for c in np.unique(np.stack(frames).reshape(-1, 3), axis=0).tolist())


def agree(decoded: list[np.ndarray], rendered: list[np.ndarray]) -> bool:
    """Most pixels of an H.264-decoded DensePose video within 40 (RGB) of the frames rendered (the tiny model's
    small, noisy parts lose their edges to 4:2:0 chroma)."""
    difference = np.linalg.norm(np.stack(decoded).astype(np.float32) - np.stack(rendered), axis=-1)
    return float((difference < 40).mean()) > 0.7  # 0.82 measured; another picture agrees on ~0.3


def shows_a_body(frames: list[np.ndarray]) -> bool:
    """Some pixels far from the background colour (the tiny model's parts are small and noisy, and H.264's 4:2:0
    chroma smears them, so decoded colours are compared loosely)."""
    background = PART_COLOURS[0].astype(np.float32)
    return any((np.linalg.norm(frame.astype(np.float32) - background, axis=-1) > 40).mean() > 0.05
               for frame in frames)


def test_extraction_end_to_end_matches_the_pipeline_and_the_palette(session_engine: Engine,
                                                                    clips: dict[str, Path]) -> None:
    result = session_engine.run("densepose", {"video": clips["person"]}, FAST)
    video = frames_of(result.files["video"])
    assert len(video) == 3 and video[0].shape == (64, 64, 3)
    assert media.video_info(result.files["video"]).fps == pytest.approx(25)
    assert shows_a_body(video)
    pipe = session_engine.pipeline("densepose")
    options = SPEC.parse_options(FAST)
    clip = pipe({"video": clips["person"]}, options)
    assert clip.frames_without_person == 0 and clip.most_people >= 1
    expected = list(rendered(clip, "person.mp4", options.framing, options.size, options.margin, options.smooth))
    assert only_part_colours(expected) and shows_a_body(expected)
    assert agree(video, expected)
    settings = json.loads(result.files["settings"].read_text())
    assert settings["options"]["framing"] == "follow" and settings["warnings"] == []
    assert settings["details"]["extraction"] == clip.counts()


@pytest.mark.parametrize("count, source, target", [(6, 50, 25), (6, 10, 25), (7, 25, 25), (9, 30, 24)])
def test_streamed_resampling_shows_the_frames_read_video_would(count: int, source: float, target: float) -> None:
    shown = [index for index, repeats in resampled_frames(iter(range(count)), source, target)
             for _ in range(repeats)]
    expected = media.resample_indices(count, source, target)
    assert shown[:len(expected)] == expected  # the pipeline trims the rest once the count is known


def test_a_fifty_fps_video_becomes_25_fps(session_engine: Engine, clips: dict[str, Path], tmp_path: Path) -> None:
    media.write_mp4(tmp_path / "fifty.mp4", frames_of(person_video(tmp_path / "four.mp4", frames=4)), 50)
    result = session_engine.run("densepose", {"video": tmp_path / "fifty.mp4"}, {**FAST, "fps": 25})
    assert len(frames_of(result.files["video"])) == 2


def test_a_clip_without_anyone_is_an_input_error(clips: dict[str, Path], tmp_path: Path) -> None:
    model = tiny_network()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-PERSON_BIAS, PERSON_BIAS]))
    pipe = DensePosePipeline(model, "cpu", torch.float32)
    from engine.pipelines.densepose.job import extract

    out = tmp_path / "densepose.mp4"
    with pytest.raises(InputError, match="No person was found in any frame of 'person.mp4'"):
        extract(pipe, clips["person"], SPEC.parse_options(FAST), out, lambda f, m: None, None)


def test_cli_writes_the_densepose_video(capsys: pytest.CaptureFixture, tiny_hub: Path, clips: dict[str, Path],
                                        tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert main(["densepose", "--video", str(clips["person"]), "--out", str(out), "--size", "64",
                 "--detect-size", "128", "--framing", "centre", "--cache-dir", str(tiny_hub), "--offline",
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["densepose.mp4", "settings.json"]
    assert len(frames_of(out / "densepose.mp4")) == 3
    assert main(["densepose", "--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "no"),
                 "--cache-dir", str(tiny_hub), "--offline"]) == 2
    assert "error: Video 'none.mp4' does not exist" in capsys.readouterr().err


def test_pose_extracts_an_ordinary_video_first(session_engine: Engine, clips: dict[str, Path]) -> None:
    inputs = {"image": clips["reference"], "motion": clips["person"]}
    result = session_engine.run("pose", inputs, POSE)
    assert set(result.files) == {"video", "grid", "densepose", "settings"}
    extracted, grid = frames_of(result.files["densepose"]), frames_of(result.files["grid"])
    assert len(extracted) == len(grid) == len(frames_of(result.files["video"])) == 3
    assert shows_a_body(extracted)
    for motion, panel in zip(extracted, grid):  # the grid's motion panel is the extracted DensePose
        assert agree([panel[:, 64:128]], [motion])
    settings = json.loads(result.files["settings"].read_text())
    assert settings["warnings"] == [] and settings["details"]["motion_kind"] == "video"
    assert settings["details"]["extraction"]["frames"] == 3


def test_pose_tab_extracts_and_animates_an_ordinary_video(session_engine: Engine, clips: dict[str, Path]) -> None:
    from gradio_client import Client, handle_file

    from tabs import build_app

    demo = build_app(session_engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(session_engine.config.outputs)])
    try:
        client = Client(demo.local_url, verbose=False)
        video, grid, extracted = client.predict(image=handle_file(str(clips["reference"])),
                                                motion=handle_file(str(clips["person"])), **POSE, api_name="/pose")
        paths = [Path(v["video"] if isinstance(v, dict) else v) for v in (video, grid, extracted)]
        assert [len(frames_of(p)) for p in paths] == [3, 3, 3]
        alone = client.predict(video=handle_file(str(clips["person"])), **FAST, api_name="/densepose")
        alone = Path(alone["video"] if isinstance(alone, dict) else alone)
        assert shows_a_body(frames_of(alone))
    finally:
        demo.close()
