"""Speech-driven talking faces end to end on the tiny Hub cache (mediapipe faked): Engine.run (hybrid), the CLI
and the tab's API give a 25 fps video of ceil(seconds * 25) frames with the speech muxed in; short audio, silence
and long audio work; unreadable, empty, silent-less or too long audio is refused before any model loads."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import Engine, EngineConfig, media
from engine.__main__ import main
from engine.errors import InputError
from engine.limits import Limits
from engine.pipelines.face import job, speech
from tests.face.conftest import FakeLandmarker, audio_seconds, speech_like, write_portrait, write_speech
from tests.tolerance import assert_relative_close

SIZE = 64
OPTIONS = {"steps": 1, "size": SIZE, "seed": 3}
SECONDS = 0.3  # 8 frames at 25 fps
FRAMES = math.ceil(SECONDS * 25)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech_inputs")
    paths = {"portrait": write_portrait(folder / "portrait.png", (96, 80)),
             "speech": write_speech(folder / "speech.wav", SECONDS), "m4a": write_speech(folder / "speech.m4a", 0.5)}
    if shutil.which("espeak-ng"):  # real speech where the synthesiser exists; the speech-like signal otherwise
        spoken = folder / "spoken.wav"
        subprocess.run(["espeak-ng", "-w", str(spoken), "Hello there"], check=True, capture_output=True)
        paths["spoken"] = spoken
    else:
        paths["spoken"] = write_speech(folder / "spoken.wav", 0.4)
    return paths


@pytest.fixture(scope="module")
def hybrid_run(session_engine: Engine, files: dict[str, Path]) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        from engine.pipelines.face import landmarks

        patch.setattr(landmarks, "open_landmarker", lambda task_file: FakeLandmarker())
        return session_engine.run("face", {"image": files["portrait"], "audio": files["speech"],
                                           "trajectories": json.dumps([[[12, 70], [24, 60]]])},
                                  {**OPTIONS, "fps": 10})


def test_speech_run_is_25_fps_with_the_speech_muxed_in(hybrid_run: Any) -> None:
    outputs = hybrid_run.files
    info = media.video_info(outputs["video"])
    assert info.frames == FRAMES and info.fps == pytest.approx(25) and (info.width, info.height) == (SIZE, SIZE)
    assert audio_seconds(outputs["video"]) == pytest.approx(SECONDS, abs=0.03)
    assert media.video_info(outputs["landmark_video"]).frames == FRAMES
    assert hybrid_run.settings["details"]["landmark_source"] == "speech audio"
    assert hybrid_run.settings["details"]["fps"] == 25  # the fps option (10 here) is for driving videos
    assert set(hybrid_run.settings["checkpoints"]) >= {"aniportrait", "mediapipe_face", "mofa_traj"}
    assert "mask" in outputs  # hybrid: the default face mask from the speech landmarks


def test_speech_landmarks_start_at_the_portraits_own_face(hybrid_run: Any) -> None:
    points = np.load(hybrid_run.files["landmarks"])
    assert points.shape == (FRAMES, 68, 2) and np.isfinite(points).all()
    fake = FakeLandmarker().detect(np.full((80, 96, 3), 128, np.uint8))
    from engine.pipelines.face.landmarks import to_68

    np.testing.assert_allclose(points[0], to_68(fake.points), rtol=1e-6)
    assert np.abs(points[1:] - points[0]).max() > 0.01  # the speech moves the face
    assert np.abs(points - points[0]).max() < 40  # ... without throwing it off the 96x80 portrait


def test_cli_speech_run(capsys: Any, tiny_hub: Path, files: dict[str, Path], tmp_path: Path,
                        fake_landmarker: list) -> None:
    out = tmp_path / "cli"
    args = ["face", "--image", str(files["portrait"]), "--audio", str(files["spoken"]), "--steps", "1", "--size",
            str(SIZE), "--still-head", "--out", str(out), "--cache-dir", str(tiny_hub), "--offline",
            "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    seconds = media.audio_info(files["spoken"])[1]
    info = media.video_info(out / "result.mp4")
    assert info.frames == math.ceil(seconds * 25) and info.fps == pytest.approx(25)
    assert audio_seconds(out / "result.mp4") == pytest.approx(seconds, abs=0.03)
    assert json.loads((out / "settings.json").read_text())["options"]["still_head"] is True


@pytest.fixture(scope="module")
def through_tab(tiny_hub: Path, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An m4a speech file through the tab's API and its landmark preview, mediapipe faked."""
    from gradio_client import Client, handle_file

    from engine.pipelines.face import landmarks
    from tabs import build_app

    outputs = tmp_path_factory.mktemp("speech_tab_outputs")
    engine = Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(landmarks, "open_landmarker", lambda task_file: FakeLandmarker())
        patch.setattr(job, "PREVIEW_FOLDER", outputs / "previews")
        demo = build_app(engine)
        demo.queue().launch(prevent_thread_lock=True, quiet=True, allowed_paths=[str(outputs)])
        try:
            client = Client(demo.local_url, verbose=False)
            portrait, audio = handle_file(str(files["portrait"])), handle_file(str(files["m4a"]))
            video, landmark_video, extras = client.predict(image=portrait, audio=audio, api_name="/face", **OPTIONS)
            preview = client.predict(image=portrait, audio=audio, size=SIZE, api_name="/face_landmarks_preview")
        finally:
            demo.close()
    return {"video": Path(video), "landmark_video": Path(landmark_video),
            "preview": Path(preview["video"] if isinstance(preview, dict) else preview)}


def test_tab_speech_run_and_preview(through_tab: dict[str, Any], files: dict[str, Path]) -> None:
    decoded = len(media.read_audio(files["m4a"]))  # AAC's priming samples make the decoded audio a little longer
    frames = speech.frame_count(decoded)
    info = media.video_info(through_tab["video"])
    assert info.frames == frames and info.fps == pytest.approx(25)
    assert audio_seconds(through_tab["video"]) == pytest.approx(0.5, abs=0.05)
    assert media.video_info(through_tab["preview"]).frames == frames


# ---------------------------------------------------------------------------------------------------- renderer

@pytest.fixture(scope="module")
def renderer(tiny_hub: Path) -> speech.SpeechRenderer:
    from engine.hub import load_specs
    from engine.testing import snapshot_folder

    return speech.SpeechRenderer.load(snapshot_folder(tiny_hub, load_specs()["aniportrait"]), "cpu")


def render(renderer: speech.SpeechRenderer, samples: np.ndarray, **motion: Any) -> speech.SpeechLandmarks:
    from engine.pipelines.face.geometry import FaceGeometry

    mesh = np.random.default_rng(0).normal(0, 4, (468, 3))
    transform = np.eye(4)
    transform[2, 3] = -40
    portrait = np.random.default_rng(1).uniform(20, 60, (478, 2))
    return renderer(samples, portrait, FaceGeometry(mesh, transform), 80, 96, speech.HeadMotion(**motion))


def test_silence_and_very_short_speech_work(renderer: speech.SpeechRenderer) -> None:
    for samples in (np.zeros(16000, np.float32), speech_like(0.05)):
        out = render(renderer, samples)
        assert out.landmarks.shape == (speech.frame_count(len(samples)) + 1, 68, 2)
        assert np.isfinite(out.landmarks).all()


def test_long_speech_decodes_the_pose_chunk_by_chunk(renderer: speech.SpeechRenderer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Audio2Pose starts afresh on every chunk, each from its own audio (1 s chunks here to stay fast); the rotation
    is scaled by the head-pose strength, the translation kept; a still head has no pose at all."""
    from engine.pipelines.face import aniportrait

    monkeypatch.setattr(speech, "pose_chunks", lambda samples, frames: aniportrait.pose_chunks(samples, frames,
                                                                                                seconds=1))
    samples = speech_like(2.1)
    out = render(renderer, samples, strength=0.5, window=1)
    assert out.poses.shape == (53, 6)
    values = renderer.normalise(samples)
    chunks = aniportrait.pose_chunks(len(samples), 53, seconds=1)
    assert [chunk.frames for chunk in chunks] == [25, 28]
    for chunk in chunks:
        memory = renderer.pose_model.memory(values[:, chunk.start:chunk.stop], chunk.frames)
        expected = renderer.pose_model.decode(memory).detach().numpy() * [0.5, 0.5, 0.5, 1, 1, 1]
        start = chunk.start // 640
        assert_relative_close(out.poses[start:start + chunk.frames], expected)
    assert not render(renderer, samples, still=True).poses.any()


# ---------------------------------------------------------------------------------------------------- bad input

def refused(engine: Engine, inputs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        engine.run("face", inputs, OPTIONS)
    assert engine.models.keys() == []


def test_bad_speech_files_are_refused_by_name(engine: Engine, files: dict[str, Path], tmp_path: Path) -> None:
    empty, text = tmp_path / "empty.wav", tmp_path / "notes.mp3"
    empty.write_bytes(b"")
    text.write_text("not audio at all")
    for path in (empty, text):
        refused(engine, {"image": files["portrait"], "audio": path}, path.name)
    refused(engine, {"image": files["portrait"], "audio": files["portrait"]}, "portrait.png' has no audio track")
    refused(engine, {"image": files["portrait"], "audio": tmp_path / "missing.wav"}, "does not exist")
    click = write_speech(tmp_path / "click.wav", 0.03)
    refused(engine, {"image": files["portrait"], "audio": click}, "at least 0.08 s")
    refused(engine, {"image": files["portrait"], "audio": files["speech"], "landmarks": files["speech"]},
            "Both were given")


def test_no_face_in_the_portrait_is_refused_before_the_models_load(engine: Engine, files: dict[str, Path],
                                                                   tmp_path: Path, fake_landmarker: list) -> None:
    black = tmp_path / "black.png"
    media.write_png(black, np.zeros((80, 96, 3), np.uint8))
    refused(engine, {"image": black, "audio": files["speech"]}, "No face was found in the portrait")


def test_long_speech_is_refused_from_its_header(tiny_hub: Path, files: dict[str, Path], tmp_path: Path) -> None:
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tiny_hub, offline=True,
                                 limits=Limits(max_video_frames=5)))
    refused(engine, {"image": files["portrait"], "audio": files["speech"]}, r"speech.wav' lasts 0.3 s; at most 0.2 s")


def test_summary_counts_speech_frames(engine: Engine, files: dict[str, Path]) -> None:
    text = engine.preview("face", "summary", audio=str(files["speech"]), steps=2).value
    assert text.startswith(f"{FRAMES} frames (0.3 s at 25 fps): 1 window(s)")


def test_speech_preview_loads_only_the_speech_renderer(session_engine: Engine, files: dict[str, Path],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The landmark preview of a speech run needs AniPortrait's networks, not the diffusion ones: it works while the
    face pipeline could not be built (e.g. SVD not downloaded yet)."""
    from engine.pipelines.face import landmarks
    from engine.pipelines.face.pipeline import FacePipeline

    def no_diffusion(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the preview built the diffusion pipeline")

    monkeypatch.setattr(landmarks, "open_landmarker", lambda task_file: FakeLandmarker())
    monkeypatch.setattr(job, "PREVIEW_FOLDER", tmp_path / "previews")
    monkeypatch.setattr(FacePipeline, "load", classmethod(no_diffusion))
    video = session_engine.preview("face", "landmarks", image=str(files["portrait"]), audio=str(files["speech"]),
                                   size=SIZE).value
    assert media.video_info(video).frames == FRAMES
