"""Talking faces end to end through Engine.run, the CLI and the Gradio API on the tiny Hub cache (a fake landmarker
stands in for mediapipe), the landmark preview and summary, and bad inputs refused before any model loads."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import Engine, EngineConfig, media
from engine.__main__ import main
from engine.errors import InputError
from engine.limits import Limits
from engine.pipelines.face import job
from tests.face.conftest import audio_seconds, face68, write_driving, write_portrait

SIZE = 64  # the tiny models work at 64 px (the real ones at 512)
FPS = 10
OPTIONS = {"steps": 1, "size": SIZE, "fps": FPS, "seed": 3}
TRACKS = [[[12, 70], [24, 60]]]  # hybrid: one trajectory low on the left, outside the face
REDS = [128, 140, 0, 160]  # frame 3 (1-based) is black: no face there, filled from its neighbours
MOUTHS = (0.0, 0.1, 0.2)  # the landmarks file: three frames
AUDIO_SECONDS = len(REDS) / FPS


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("face_inputs")
    paths = {"portrait": write_portrait(folder / "portrait.png", (96, 80)),
             "driving": write_driving(folder / "driving.mp4", REDS, FPS, audio_seconds=AUDIO_SECONDS),
             "landmarks": folder / "landmarks.npy", "black": folder / "black.png"}
    np.save(paths["landmarks"], np.stack([face68(48, 40, 16, mouth) for mouth in MOUTHS]))
    media.write_png(paths["black"], np.zeros((80, 96, 3), np.uint8))
    return paths


@pytest.fixture(scope="module")
def from_file(session_engine: Engine, files: dict[str, Path]) -> Any:
    """A hybrid run from a landmarks file; `landmark_video_first`: landmarks.mp4 was written before the pipeline ran."""
    seen: list[bool] = []
    pipeline_class = session_engine.task("face").pipeline_class
    original = pipeline_class.__call__

    def checking(self: Any, inputs: Any, options: Any, progress: Any, cancel: Any) -> Any:
        staging = list((Path(session_engine.config.outputs) / "face").glob(".staging-*/landmarks.mp4"))
        seen.append(len(staging) == 1 and media.video_info(staging[0]).frames == len(MOUTHS))
        return original(self, inputs, options, progress, cancel)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_class, "__call__", checking)
        result = session_engine.run("face", {"image": files["portrait"], "landmarks": files["landmarks"],
                                             "trajectories": json.dumps(TRACKS)}, OPTIONS)
    result.landmark_video_first = seen == [True]
    return result


def test_hybrid_landmarks_file_run(from_file: Any, files: dict[str, Path]) -> None:
    outputs = from_file.files
    info = media.video_info(outputs["video"])
    assert info.frames == len(MOUTHS) and (info.width, info.height) == (SIZE, SIZE) and info.fps == pytest.approx(FPS)
    assert audio_seconds(outputs["video"]) is None  # a landmarks file has no sound
    np.testing.assert_array_equal(np.load(outputs["landmarks"]), np.load(files["landmarks"]))
    assert from_file.settings["details"] == {"landmark_source": "landmarks file", "frames": 3, "filled_frames": []}
    assert json.loads(outputs["trajectories"].read_text()) == TRACKS
    mask = media.read_image(outputs["mask"])[..., 0]  # none painted: the face region from the landmarks
    assert mask.shape == (80, 96) and mask[40, 48] == 255 and mask[75, 5] == 0
    assert set(from_file.settings["checkpoints"]) >= {"svd_xt_11", "mofa_ldmk", "mofa_traj"}


def test_landmark_preview_is_written_before_any_diffusion(from_file: Any) -> None:
    assert from_file.landmark_video_first


def test_cli_repeats_a_run_from_its_folder(capsys: Any, tiny_hub: Path, from_file: Any, files: dict[str, Path],
                                          tmp_path: Path) -> None:
    run, out = from_file.files, tmp_path / "cli"
    args = ["face", "--image", str(files["portrait"]), "--landmarks", str(run["landmarks"]), "--trajectories",
            str(run["trajectories"]), "--mask", str(run["mask"]), "--steps", "1", "--size", str(SIZE), "--fps",
            str(FPS), "--seed", "3", "--out", str(out), "--cache-dir", str(tiny_hub), "--offline", "--device", "cpu"]
    assert main(args) == 0
    assert "result.mp4" in capsys.readouterr().out
    assert (out / "landmarks.mp4").is_file() and (out / "settings.json").is_file()
    videos = [media.read_video(path)[0] for path in (out / "result.mp4", run["video"])]
    assert len(videos[0]) == len(MOUTHS) and all(np.array_equal(a, b) for a, b in zip(*videos))  # the same video


def test_cli_refuses_two_drivers_with_exit_code_2(capsys: Any, tiny_hub: Path, files: dict[str, Path],
                                                  tmp_path: Path) -> None:
    args = ["face", "--image", str(files["portrait"]), "--landmarks", str(files["landmarks"]), "--driving",
            str(files["driving"]), "--out", str(tmp_path / "x"), "--cache-dir", str(tiny_hub), "--offline"]
    assert main(args) == 2
    assert "exactly one driver" in capsys.readouterr().err


@pytest.fixture(scope="module")
def through_tab(tiny_hub: Path, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A driving video with an audio track through the tab's API (and its landmark preview), mediapipe faked."""
    from gradio_client import Client, handle_file

    from engine.pipelines.face import landmarks
    from tabs import build_app
    from tests.face.conftest import FakeLandmarker

    made: list[FakeLandmarker] = []
    outputs = tmp_path_factory.mktemp("tab_outputs")
    engine = Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(landmarks, "open_landmarker", lambda task_file: made.append(FakeLandmarker()) or made[-1])
        patch.setattr(job, "PREVIEW_FOLDER", outputs / "previews")
        demo = build_app(engine)
        demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(outputs)])
        try:
            client = Client(demo.local_url, verbose=False)
            portrait, driving = handle_file(str(files["portrait"])), handle_file(str(files["driving"]))
            video, landmark_video, extras = client.predict(image=portrait, driving=driving, api_name="/face",
                                                           **OPTIONS)
            preview = client.predict(image=portrait, driving=driving, size=SIZE, fps=FPS,
                                     api_name="/face_landmarks_preview")
        finally:
            demo.close()
    extras = {Path(p).name: Path(p) for p in extras}
    return {"video": Path(video), "landmark_video": Path(landmark_video), "extras": extras, "landmarkers": made,
            "preview": Path(preview["video"] if isinstance(preview, dict) else preview)}


def test_tab_result_keeps_the_driving_videos_audio(through_tab: dict[str, Any]) -> None:
    info = media.video_info(through_tab["video"])
    assert info.frames == len(REDS) and info.fps == pytest.approx(FPS) and (info.width, info.height) == (SIZE, SIZE)
    assert audio_seconds(through_tab["video"]) == pytest.approx(AUDIO_SECONDS, abs=0.03)
    assert media.video_info(through_tab["landmark_video"]).frames == len(REDS)
    assert set(through_tab["extras"]) == {"settings.json", "landmarks.npy"}


def test_tab_run_counts_the_filled_frame_and_tracks_the_video(through_tab: dict[str, Any]) -> None:
    settings = json.loads(through_tab["extras"]["settings.json"].read_text())
    assert settings["details"] == {"landmark_source": "driving video", "frames": len(REDS), "filled_frames": [3]}
    assert any("frame 3" in warning for warning in settings["warnings"])
    run, preview = through_tab["landmarkers"]  # one for the run, one for the preview
    assert run.closed and run.calls == [None, 0, 100, 200, 300]  # the portrait as a picture, then the video frames
    assert media.video_info(through_tab["preview"]).frames == len(REDS)


def test_tab_run_retargets_the_drivers_motion_onto_the_portraits_own_face(through_tab: dict[str, Any]) -> None:
    points = np.load(through_tab["extras"]["landmarks.npy"])
    assert points.shape == (len(REDS), 68, 2)
    portrait = face68(48, 40, 20, 0.128)  # what the fake finds in the grey 96x80 portrait
    np.testing.assert_allclose(points[0], portrait, rtol=1e-5)
    # The driver's face (size 16 in the 64x64 frames) moves right by (red - 128) / 4; on the portrait's face (size
    # 20) that is 20/16 as far. The filled frame lies halfway between its neighbours.
    shift = points[:, :, 0].mean(axis=1) - portrait[:, 0].mean()
    reds = np.array(REDS, float)
    reds[2] = (REDS[1] + REDS[3]) / 2
    np.testing.assert_allclose(shift, (reds - REDS[0]) / 4 * 20 / 16, atol=0.6)  # H.264 moves colours a little


# ---------------------------------------------------------------------------------------------------- previews

def test_summary_counts_frames_and_windows(engine: Engine, files: dict[str, Path]) -> None:
    text = engine.preview("face", "summary", driving=str(files["driving"]), fps=FPS, steps=4).value
    assert text.startswith(f"{len(REDS)} frames (0.4 s at {FPS} fps): 1 window(s)") and "4 denoising passes" in text
    assert engine.preview("face", "summary").note  # nothing given yet: a note, not an error
    assert [job.window_count(n) for n in (2, 25, 26, 30, 37, 38, 100)] == [1, 1, 2, 2, 2, 3, 8]


def test_landmark_preview_video_is_made_once_per_input(engine: Engine, files: dict[str, Path], tmp_path: Path,
                                                       fake_landmarker: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job, "PREVIEW_FOLDER", tmp_path / "previews")
    first = engine.preview("face", "landmarks", image=str(files["portrait"]), driving=str(files["driving"]),
                           size=SIZE, fps=FPS).value
    assert media.video_info(first).frames == len(REDS) and media.video_info(first).width == SIZE  # as the model sees it
    again = engine.preview("face", "landmarks", image=str(files["portrait"]), driving=str(files["driving"]),
                           size=SIZE, fps=FPS).value
    assert again == first and len(fake_landmarker) == 1  # the second call reuses the video
    assert Path(first).parent == tmp_path / "previews"
    assert engine.preview("face", "landmarks", image=str(files["portrait"])).note


def test_driving_frames_follow_the_engines_resampling(files: dict[str, Path], tmp_path: Path) -> None:
    video = write_driving(tmp_path / "fast.mp4", list(range(100, 200, 4)), fps=25)  # 25 frames
    for fps in (10, 25, 30):
        frames = job.DrivingFrames(video, fps)
        yielded = [frame[0, 0, 0] for frame in frames]
        expected = [frame[0, 0, 0] for frame in media.read_video(video, fps=fps)[0]]
        assert yielded[:frames.shown] == expected


# ---------------------------------------------------------------------------------------------------- bad input

def refused(engine: Engine, inputs: dict[str, Any], match: str, options: dict[str, Any] | None = None) -> None:
    with pytest.raises(InputError, match=match):
        engine.run("face", inputs, {**OPTIONS, **(options or {})})
    assert engine.models.keys() == []  # refused before any network loads


def test_driver_must_be_exactly_one(engine: Engine, files: dict[str, Path]) -> None:
    refused(engine, {"image": files["portrait"]}, "exactly one driver")
    refused(engine, {"image": files["portrait"], "driving": files["driving"], "landmarks": files["landmarks"]},
            "Both were given")


@pytest.mark.parametrize("array, match", [
    (np.zeros((5, 67, 2)), r"shape \[5, 67, 2\]"),
    (np.zeros((1, 68, 2)), "at least 2"),
    (np.array([None] * 4, dtype=object), r"shape \[4\]"),
    (np.full((3, 68, 2), np.nan), "NaN"),
    (np.full((3, 68, 2), 500.0), "not on the 96x80 portrait"),
])
def test_bad_landmarks_files(engine: Engine, files: dict[str, Path], tmp_path: Path, array: np.ndarray,
                             match: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    refused(engine, {"image": files["portrait"], "landmarks": path}, match)


def test_pickled_or_foreign_landmarks_are_refused_from_the_header(engine: Engine, files: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.empty((3, 68, 2), dtype=object), allow_pickle=True)
    refused(engine, {"image": files["portrait"], "landmarks": pickled}, "numbers are needed")
    text = tmp_path / "notes.npy"
    text.write_text("not an array")
    refused(engine, {"image": files["portrait"], "landmarks": text}, "not a readable .npy")


def test_long_landmark_files_and_driving_videos_are_refused(tmp_path: Path, tiny_hub: Path,
                                                           files: dict[str, Path]) -> None:
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tiny_hub, offline=True,
                                 limits=Limits(max_video_frames=2)))
    refused(engine, {"image": files["portrait"], "landmarks": files["landmarks"]}, "at most 2")
    refused(engine, {"image": files["portrait"], "driving": files["driving"]}, "too long")
    long = tmp_path / "long.npy"
    np.save(long, np.repeat(np.load(files["landmarks"])[:1], job.MAX_FRAMES + 1, axis=0))
    refused(Engine(EngineConfig(device="cpu", outputs=tmp_path / "more", cache_dir=tiny_hub, offline=True)),
            {"image": files["portrait"], "landmarks": long}, "at most 500 .the face task's limit")


def test_short_driving_video_and_small_portrait(engine: Engine, files: dict[str, Path], tmp_path: Path) -> None:
    one = write_driving(tmp_path / "one.mp4", [128], FPS)
    refused(engine, {"image": files["portrait"], "driving": one}, "at least 2 are needed")
    small = write_portrait(tmp_path / "small.png", (40, 30))
    refused(engine, {"image": small, "landmarks": files["landmarks"]}, "at least 64 pixels")


def test_no_face_in_the_portrait_or_a_long_gap_is_refused_before_the_models_load(
        engine: Engine, files: dict[str, Path], tmp_path: Path, fake_landmarker: list) -> None:
    refused(engine, {"image": files["black"], "driving": files["driving"]}, "No face was found in the portrait")
    gap = write_driving(tmp_path / "gap.mp4", [128] + [0] * 7 + [140], FPS)
    refused(engine, {"image": files["portrait"], "driving": gap}, r"driving frames 2-8 \(0\.10-0\.80 s")
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.mp4"))


def test_bad_masks_and_trajectories(engine: Engine, files: dict[str, Path], tmp_path: Path) -> None:
    empty, wrong = tmp_path / "empty.png", tmp_path / "wrong.png"
    media.write_png(empty, np.zeros((80, 96), np.uint8))
    media.write_png(wrong, np.full((10, 10), 255, np.uint8))
    given = {"image": files["portrait"], "landmarks": files["landmarks"]}
    refused(engine, {**given, "mask": empty}, "is empty")
    refused(engine, {**given, "mask": wrong}, "is 10x10 but the portrait is 96x80")
    refused(engine, {**given, "mask": files["black"]}, "face would not move")
    refused(engine, {**given, "trajectories": "[[[1, 2]]]"}, "Trajectory 1")
    refused(engine, {**given, "trajectories": "not json"}, "neither JSON")


def test_tab_turns_brush_strokes_into_a_mask_at_the_portraits_size() -> None:
    from tabs.face import painted_mask

    layer = np.zeros((40, 48, 4), np.uint8)
    layer[10:20, 10:20] = (255, 255, 255, 255)
    mask = painted_mask({"background": None, "layers": [layer], "composite": None}, (80, 96))
    assert mask.shape == (80, 96) and mask[30, 30] == 255 and mask[5, 5] == 0
    assert painted_mask({"layers": [np.zeros((40, 48, 4), np.uint8)]}, (80, 96)) is None
    assert painted_mask(None, (80, 96)) is None
