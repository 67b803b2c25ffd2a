"""Talking faces job: check the portrait, the driver (a face video or a landmarks file), the optional hybrid
trajectories and landmark mask before any model loads; then landmarks (driving video -> mediapipe -> retargeted onto
the portrait), the landmark preview video written before any diffusion, MOFA-Video, and result.mp4 with the driver's
audio. Plus the tab's previews: the landmark video and the frame count / expected time.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from engine import limits, media
from engine.errors import InputError, PreviewUnavailable
from engine.jobs import JobContext, PreviewContext
from engine.pipelines.face import drawing, geometry, landmarks, speech
from engine.pipelines.face.aniportrait import FPS, SAMPLE_RATE
from engine.tasks import Options

MIN_PORTRAIT = 64  # pixels on the short side; smaller pictures hold too little face to drive
# Frames per run: every denoising step runs one 25-frame window per 12 frames, and the pipeline holds ~5 MB of pose
# images and flows per frame at 512 in host memory; 500 frames (20 s at 25 fps) is 41 windows and ~2.6 GB. The
# original caps at 125 (--max_frame_len in MOFA-Video-Keypoint/inference_opendomain.py@3ad3b546da4c).
MAX_FRAMES = 500
TASK_FILE = "aniportrait/src/utils/mp_models/face_landmarker_v2_with_blendshapes.task"  # in checkpoint mediapipe_face
SPEECH_HINT = "Use a WAV, MP3, FLAC, OGG or M4A file of speech (or record one with the microphone)."
NPY_HINT = "Give a .npy file holding a float array of shape [N, 68, 2] (x, y in the portrait's pixels), N >= 2."


# ---------------------------------------------------------------------------------------------------- inputs

def read_portrait(path: str | Path) -> np.ndarray:
    image = media.read_image(path, keep_alpha=False, what="Portrait")
    if min(image.shape[:2]) < MIN_PORTRAIT:
        raise InputError(f"The portrait '{Path(path).name}' is {image.shape[1]}x{image.shape[0]}; its short side "
                         f"must be at least {MIN_PORTRAIT} pixels. Use a larger picture of the face.")
    return image


def read_landmarks_file(path: str | Path, portrait_shape: tuple[int, int]) -> np.ndarray:
    """[N, 68, 2] float32 from a .npy, its header (shape, dtype) checked before any data is read."""
    path = Path(path)
    check_landmarks_header(path)
    try:
        points = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as exc:
        raise InputError(f"Landmarks '{path.name}' could not be read ({exc}). {NPY_HINT}") from None
    if not np.isfinite(points).all():
        raise InputError(f"Landmarks '{path.name}' contain NaN or infinite values. {NPY_HINT}")
    height, width = portrait_shape
    cx, cy = points[0].mean(axis=0)
    if not (0 <= cx < width and 0 <= cy < height):
        raise InputError(f"Landmarks '{path.name}': the reference face (entry 0, centred at x {cx:.0f}, y {cy:.0f}) "
                         f"is not on the {width}x{height} portrait. Give the points in the portrait's pixels.")
    return points


def check_landmarks_header(path: Path) -> int:
    """The frame count of a landmarks .npy, from its header: shape [N, 68, 2], 2 <= N <= the frame limit, numbers."""
    if not path.is_file():
        raise InputError(f"Landmarks file '{path.name}' does not exist. {NPY_HINT}")
    shape, dtype = _npy_header(path)
    max_frames = frame_limit()
    if len(shape) != 3 or shape[1:] != (68, 2):
        raise InputError(f"Landmarks '{path.name}' have shape {list(shape)}; the face task takes [N, 68, 2]: N frames "
                         "of 68 (x, y) points, entry 0 = the portrait's own face.")
    if shape[0] < 2:
        raise InputError(f"Landmarks '{path.name}' hold {shape[0]} frame(s); at least 2 are needed (entry 0 = the "
                         "portrait, then the frames to animate).")
    if shape[0] > max_frames:
        raise InputError(f"Landmarks '{path.name}' hold {shape[0]} frames; at most {max_frames} ({_limit_reason()}). "
                         "Shorten the sequence or split it.")
    if dtype.kind not in "fiu":
        raise InputError(f"Landmarks '{path.name}' are of type {dtype}; numbers are needed. {NPY_HINT}")
    return shape[0]


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with path.open("rb") as stream:
            version = np.lib.format.read_magic(stream)
            if version not in readers:
                raise ValueError(f"format version {version}")
            shape, _, dtype = readers[version](stream)
    except (ValueError, OSError, SyntaxError) as exc:
        raise InputError(f"'{path.name}' is not a readable .npy array ({exc}). {NPY_HINT}") from None
    return tuple(shape), dtype


def check_driving(path: str | Path, fps: float) -> int:
    """The driving video's frame count at `fps`, from its header or packets (nothing decoded): 2 .. the limit."""
    path = Path(path)
    info = media.video_info(path)
    max_frames = frame_limit()
    source_bound = math.ceil((max_frames + 1) * info.fps / fps) + 1  # enough source frames to pass the limit
    count = info.frames or media.count_video_frames(path, source_bound)
    frames = media.resampled_count(count, info.fps, fps)
    if frames > max_frames:
        raise driving_too_long(path, f"{count} frames at {info.fps:g} fps", fps)
    if frames < 2:
        raise InputError(f"The driving video '{path.name}' has {frames} frame(s) at {fps:g} fps; at least 2 are "
                         "needed. Use a longer clip.")
    return frames


def driving_too_long(path: Path, length: str, fps: float) -> InputError:
    return InputError(f"The driving video '{path.name}' is too long ({length}; at most "
                      f"{frame_limit()} frames at {fps:g} fps: {_limit_reason()}). Trim or split it, or lower the "
                      "fps option.")


def check_speech(path: str | Path) -> int:
    """The frame count (ceil(seconds * 25)) of a speech file, from its header (nothing decoded): 2 .. the limit."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Speech audio '{path.name}' does not exist. {SPEECH_HINT}")
    found = media.audio_info(path)
    if found is None:
        raise InputError(f"'{path.name}' has no audio track. {SPEECH_HINT}")
    seconds = found[1]
    if seconds <= 0:
        raise InputError(f"The length of the speech audio '{path.name}' could not be read from its header. "
                         f"{SPEECH_HINT}")
    frames = speech.frame_count(round(seconds * SAMPLE_RATE))
    if frames > frame_limit():
        raise speech_too_long(path, seconds)
    if frames < 2:
        raise InputError(f"The speech audio '{path.name}' lasts {seconds:.3f} s; at least {2 / FPS:.2f} s (2 frames "
                         "at 25 fps) is needed.")
    return frames


def speech_too_long(path: Path, seconds: float) -> InputError:
    return InputError(f"The speech audio '{path.name}' lasts {seconds:.1f} s; at most {frame_limit() / FPS:g} s "
                      f"({frame_limit()} frames at 25 fps: {_limit_reason()}). Trim or split it.")


def read_speech(path: Path) -> np.ndarray:
    """16 kHz mono float32 samples (PyAV's resampler), the decoded length checked against the limit again."""
    samples = media.read_audio(path, SAMPLE_RATE, max_seconds=frame_limit() / FPS + 1 / FPS)
    if speech.frame_count(len(samples)) > frame_limit():
        raise speech_too_long(path, len(samples) / SAMPLE_RATE)
    if speech.frame_count(len(samples)) < 2:
        raise InputError(f"The speech audio '{path.name}' holds only {len(samples)} samples at 16 kHz; at least "
                         f"{2 / FPS:.2f} s is needed. {SPEECH_HINT}")
    return samples


def frame_limit() -> int:
    """The most frames one face run takes: the engine's video frame limit or the task's own, the lower."""
    return min(limits.current().max_video_frames, MAX_FRAMES)


def _limit_reason() -> str:
    if limits.current().max_video_frames <= MAX_FRAMES:
        return "the frame limit, set with --max-video-frames"
    return "the face task's limit: each frame adds denoising windows and memory"


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Landmark mask picture -> uint8 HxW, 255 where painted (the face region the landmarks drive)."""
    return media.read_mask(path, shape, "Landmark mask", "the portrait",
                           "The face would not move: paint the face region, or leave the mask out to use the face "
                           "region from the landmarks.")


def read_trajectories(value: Any, image: np.ndarray, size: int) -> list[list[list[float]]]:
    """Hybrid trajectories, parsed and checked as the Trajectories task does (inside the part the model sees); an
    empty list means no hybrid run."""
    from engine.pipelines.motion.job import check_trajectories, parse_trajectories

    tracks = parse_trajectories(value)
    if tracks:
        check_trajectories(tracks, image, size)
    return tracks


# ---------------------------------------------------------------------------------------------------- validate

def validate(inputs: dict[str, Any], options: Options) -> dict[str, Any]:
    """Read the portrait, check the driver, trajectories and mask and the options. No model is touched."""
    from engine.pipelines.face.spec import SPEC

    SPEC.pipeline_class.check_options(options)
    if not inputs.get("image"):
        raise InputError("No portrait given. Upload a picture of a face (CLI: --image PATH).")
    image = read_portrait(inputs["image"])
    driving, given, audio = inputs.get("driving"), inputs.get("landmarks"), inputs.get("audio")
    drivers = sum(bool(driver) for driver in (driving, given, audio))
    if drivers != 1:
        raise InputError("Give exactly one driver: a driving face video (CLI: --driving VIDEO), speech audio (CLI: "
                         "--audio SPEECH) or a landmarks file (CLI: --landmarks NPY)." +
                         {0: "", 2: " Both were given."}.get(drivers, " All three were given."))
    prepared: dict[str, Any] = {"image": image, "driving": None, "landmarks": None, "audio": None,
                                "trajectories": None, "mask": None}
    if audio:
        check_speech(audio)
        prepared["audio"] = Path(audio)
    elif driving:
        check_driving(driving, options.fps)
        media.audio_info(driving)  # a corrupt audio track fails here, not after the diffusion
        prepared["driving"] = Path(driving)
    else:
        prepared["landmarks"] = read_landmarks_file(given, image.shape[:2])
    if inputs.get("trajectories") is not None:
        prepared["trajectories"] = read_trajectories(inputs["trajectories"], image, options.size) or None
    if inputs.get("mask"):
        prepared["mask"] = read_mask(inputs["mask"], image.shape[:2])
    return prepared


# ---------------------------------------------------------------------------------------------------- landmarks

@dataclass(frozen=True)
class Landmarks:
    """The landmark sequence a run animates: [N, 68, 2] in portrait pixels (entry 0 = the portrait), where it came
    from, and which driving frames had no face and were filled from their neighbours (0-based)."""

    points: np.ndarray
    source: str
    filled: tuple[int, ...] = ()


class DrivingFrames:
    """The driving video's frames as shown at `fps` (media.resample_indices' choice), decoded one at a time, with an
    InputError once past the frame limit. Iterating may yield one frame past what media keeps (it drops a last,
    partial output frame when resampling): `shown` is the kept count once iteration is done."""

    def __init__(self, path: Path, fps: float, cancel: Callable[[], None] = lambda: None) -> None:
        self.path, self.fps, self.cancel = path, fps, cancel
        self.source_fps = media.video_info(path).fps
        self.decoded = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        step = self.source_fps / self.fps
        max_frames = frame_limit()
        yielded = 0
        for index, frame in enumerate(media.iter_video(self.path)):
            self.decoded = index + 1
            while math.floor(yielded * step + 1e-9) <= index:
                if yielded >= max_frames:
                    raise driving_too_long(self.path, f"at least {index + 1} frames at {self.source_fps:g} fps",
                                           self.fps)
                self.cancel()
                yield frame
                yielded += 1

    @property
    def shown(self) -> int:
        return media.resampled_count(self.decoded, self.source_fps, self.fps)


def track_driver(landmarker: landmarks.Landmarker, image: np.ndarray, path: Path, fps: float,
                 progress: Callable[[float, str], None] = lambda f, m: None,
                 cancel: Callable[[], None] = lambda: None) -> Landmarks:
    """The portrait's face, the driver's face in every frame (gaps filled), the driver's motion retargeted."""
    progress(0.0, "Finding the face in the portrait")
    portrait = landmarks.portrait_landmarks(landmarker, image)
    info = media.video_info(path)
    expected = max(1, media.resampled_count(info.frames, info.fps, fps))
    frames = DrivingFrames(path, fps, cancel)
    found: list[np.ndarray | None] = []
    for k, frame in enumerate(frames):
        detection = landmarker.detect(frame, timestamp_ms=round(k * 1000 / fps))
        found.append(None if detection is None else landmarks.to_68(detection.points).astype(np.float32))
        if k % 10 == 0:
            progress(min(1.0, k / expected), f"Tracking the driving face: frame {k + 1}")
    driver = landmarks.fill_gaps(found[:frames.shown], fps)
    return Landmarks(landmarks.retarget(portrait, driver.points), "driving video", driver.filled)


def run_landmarks(inputs: dict[str, Any], options: Options, task_file: Callable[[], Path],
                  progress: Callable[[float, str], None], cancel: Callable[[], None],
                  renderer: Callable[[], speech.SpeechRenderer] | None = None) -> Landmarks:
    """The landmark sequence of a run (or preview): the file's, the driving video's retargeted onto the portrait, or
    the speech's (AniPortrait; `renderer` gives its networks)."""
    if inputs["landmarks"] is not None:
        return Landmarks(inputs["landmarks"], "landmarks file")
    landmarker = landmarks.open_landmarker(task_file)
    try:
        if inputs.get("audio") is not None:
            if renderer is None:
                raise ValueError("speech runs need the AniPortrait renderer")
            return speak(landmarker, inputs["image"], inputs["audio"], task_file, renderer, options, progress,
                         cancel)
        return track_driver(landmarker, inputs["image"], inputs["driving"], options.fps, progress, cancel)
    finally:
        landmarker.close()


def speak(landmarker: landmarks.Landmarker, image: np.ndarray, audio: Path, task_file: Callable[[], Path],
          renderer: Callable[[], speech.SpeechRenderer], options: Options, progress: Callable[[float, str], None],
          cancel: Callable[[], None]) -> Landmarks:
    """Speech -> landmarks: the portrait's face and its metric geometry (mediapipe's canonical model from the .task
    bundle), AniPortrait's meshes and head poses, projected. Frame k (k >= 1) shows the prediction for the audio at
    k / 25 s and frame 0 the portrait's own landmarks, so the video has ceil(seconds * 25) frames in step with the
    audio (the original puts the reference before all predictions: one frame more, 40 ms late)."""
    progress(0.0, "Finding the face in the portrait")
    found = landmarks.detect_portrait(landmarker, image)
    if found.depth is None:
        raise InputError("The face landmarker gave no depth for the portrait's face; speech runs need mediapipe's "
                         "3-D face landmarks.")
    height, width = image.shape[:2]
    normalised = np.concatenate([found.points / np.float32([width, height]), found.depth[:, None] / width], axis=1)
    face = geometry.face_geometry(normalised, width, height, geometry.read_canonical_model(task_file()))
    samples = read_speech(audio)
    motion = speech.HeadMotion(options.head_pose, options.smoothing, options.still_head)
    rendered = renderer()(samples, found.points, face, height, width, motion, cancel, progress)
    points = np.concatenate([rendered.landmarks[:1], rendered.landmarks[2:]]).astype(np.float32)
    return Landmarks(points, "speech audio")


def landmark_frames(image: np.ndarray, points: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """The landmark preview: each frame's 68 points drawn over the portrait as the model sees it (short side `size`,
    centre-cropped to multiples of 64)."""
    from engine.models.mofa.flows import prepare_image

    prepared, (scale, left, top) = prepare_image(image, size)
    shifted = points * scale - np.float32([left, top])
    for frame_points in shifted:
        yield drawing.draw_over(prepared, frame_points)


def driver_audio(path: Path) -> tuple[np.ndarray, int] | None:
    """The driving video's audio (mono, at its own sample rate), or None when it has no audio track."""
    found = media.audio_info(path)
    if found is None:
        return None
    rate = found[0]
    return media.read_audio(path, rate), rate


# ---------------------------------------------------------------------------------------------------- execute

_PACE: dict[int, float] = {}  # working size -> seconds per window and step, measured by the last run in this process


def execute(ctx: JobContext) -> dict[str, Path]:
    if ctx.inputs.get("audio") is not None:  # AniPortrait's landmarks come at 25 fps, whatever the fps option says
        ctx.options = ctx.options.replace(fps=FPS)
        ctx.record("fps", FPS)
    opts = ctx.options
    sequence = run_landmarks(ctx.inputs, opts, lambda: ctx.checkpoint("mediapipe_face") / TASK_FILE, ctx.progress,
                             ctx.cancel.check,
                             lambda: ctx.pipeline().speech_renderer(ctx.checkpoint("aniportrait")))
    outputs = write_landmarks(ctx, sequence)  # the landmark preview, before any diffusion
    tracks, mask = ctx.inputs["trajectories"], ctx.inputs["mask"]
    if tracks is not None:  # hybrid: trajectories move what lies outside the mask (default: the face region)
        mask = mask if mask is not None else landmarks.face_mask(sequence.points, *ctx.inputs["image"].shape[:2])
        outputs["trajectories"] = ctx.path("trajectories.json")
        outputs["trajectories"].write_text(json.dumps(tracks))
        outputs["mask"] = media.write_png(ctx.path("mask.png"), mask)
    sound = ctx.inputs["driving"] if ctx.inputs["driving"] is not None else ctx.inputs.get("audio")
    audio = driver_audio(sound) if sound is not None else None
    ctx.cancel.check()
    pipeline = ctx.pipeline()
    if tracks is not None:  # the Trajectories task's adapter and CMP, shared with it
        pipeline = pipeline.with_trajectory_adapter(ctx.pipeline("motion"))
    started = time.perf_counter()
    result = pipeline({"image": ctx.inputs["image"], "landmarks": sequence.points, "trajectories": tracks,
                       "mask": mask}, opts, ctx.progress, ctx.cancel)
    _PACE[opts.size] = (time.perf_counter() - started) / (window_count(len(sequence.points)) * opts.steps)
    outputs["video"] = ctx.path("result.mp4")
    media.write_mp4(outputs["video"], result.frames, opts.fps, audio=audio)
    return outputs


def write_landmarks(ctx: JobContext, sequence: Landmarks) -> dict[str, Path]:
    """landmarks.mp4 (the sequence drawn over the portrait) and landmarks.npy (repeat the run with --landmarks);
    the facts into settings.json, and a warning when driving frames were filled."""
    if sequence.filled:
        ctx.warn(f"No face was found in {len(sequence.filled)} driving frame(s) "
                 f"({_frame_list(sequence.filled)}); they were filled from their neighbours.")
    ctx.record("landmark_source", sequence.source)
    ctx.record("frames", len(sequence.points))
    ctx.record("filled_frames", [k + 1 for k in sequence.filled])  # 1-based driving frames without a face
    ctx.progress(0.0, "Drawing the landmark preview")
    outputs = {"landmark_video": ctx.path("landmarks.mp4"), "landmarks": ctx.path("landmarks.npy")}
    media.write_mp4(outputs["landmark_video"], landmark_frames(ctx.inputs["image"], sequence.points, ctx.options.size),
                    ctx.options.fps)
    np.save(outputs["landmarks"], sequence.points)
    return outputs


def _frame_list(frames: tuple[int, ...], shown: int = 8) -> str:
    """'frame 3' or 'frames 3, 4, 9 and 2 more' (1-based)."""
    listed = ", ".join(str(k + 1) for k in frames[:shown])
    more = f" and {len(frames) - shown} more" if len(frames) > shown else ""
    return ("frame " if len(frames) == 1 else "frames ") + listed + more


def window_count(frames: int) -> int:
    """Windows denoised per step for `frames` frames (the pipeline's periodic sampling schedule)."""
    from engine.pipelines.face.windows import periodic_windows

    return len(periodic_windows(frames))


# ---------------------------------------------------------------------------------------------------- previews

PREVIEW_FOLDER = Path(tempfile.gettempdir()) / "animate-studio-face-previews"
PREVIEW_KEEP_S = 3600  # preview videos older than this are removed when a new one is made


def preview_landmarks(ctx: PreviewContext, image: Any, driving: Any = None, landmarks: Any = None,
                      size: int | None = None, fps: int | None = None, audio: Any = None,
                      head_pose: float | None = None, smoothing: int | None = None,
                      still_head: bool | None = None) -> str:
    """The landmark video a run would animate (the points drawn over the portrait), before any diffusion; a path.

    Videos are kept by content (portrait, driver, size, fps, head motion), so asking again is instant."""
    if not image or not (driving or landmarks or audio):
        raise PreviewUnavailable("Upload a portrait and a driving video, speech audio or a landmarks file to see the "
                                 "landmarks.")
    options = ctx.options(size=size, fps=FPS if audio else fps, head_pose=head_pose, smoothing=smoothing,
                          still_head=still_head)
    inputs = validate({"image": image, "driving": driving, "landmarks": landmarks, "audio": audio}, options)
    key = hashlib.sha256()
    for part in (image, driving or audio or landmarks):
        key.update(Path(part).read_bytes())
    key.update(f"{options.size}:{options.fps}".encode())
    if audio:
        key.update(f"{options.head_pose}:{options.smoothing}:{options.still_head}".encode())
    target = PREVIEW_FOLDER / f"landmarks-{key.hexdigest()[:24]}.mp4"
    if target.is_file():
        return str(target)
    def task_file() -> Path:
        return ctx.checkpoint("mediapipe_face") / TASK_FILE

    if audio:  # only the speech renderer (~1 GB), not the diffusion networks: it is all a landmark preview needs
        folder = ctx.checkpoint("aniportrait")
        with ctx.exclusive():
            renderer = speech.SpeechRenderer.load(folder, ctx.device, ctx.networks)
            sequence = run_landmarks(inputs, options, task_file, lambda f, m: None, lambda: None, lambda: renderer)
    else:
        sequence = run_landmarks(inputs, options, task_file, lambda f, m: None, lambda: None)
    PREVIEW_FOLDER.mkdir(parents=True, exist_ok=True)
    _prune_previews()
    partial = target.with_suffix(".partial.mp4")
    media.write_mp4(partial, landmark_frames(inputs["image"], sequence.points, options.size), options.fps)
    partial.replace(target)
    return str(target)


def _prune_previews() -> None:
    """Remove this helper's own old preview videos (only files named as it names them)."""
    now = time.time()
    for old in PREVIEW_FOLDER.glob("landmarks-*.mp4"):
        try:
            if now - old.stat().st_mtime > PREVIEW_KEEP_S:
                old.unlink()
        except OSError:
            continue


def preview_summary(ctx: PreviewContext, driving: Any = None, landmarks: Any = None, steps: int | None = None,
                    size: int | None = None, fps: int | None = None, audio: Any = None) -> str:
    """Frames, windows and denoising passes a run would take, and the expected time once a run has measured it."""
    if not (driving or landmarks or audio):
        raise PreviewUnavailable("Upload a driving video, speech audio or a landmarks file to see the frame count.")
    options = ctx.options(steps=steps, size=size, fps=FPS if audio else fps)
    if audio:
        frames = check_speech(audio)
    else:
        frames = check_driving(driving, options.fps) if driving else check_landmarks_header(Path(landmarks))
    windows = window_count(frames)
    text = (f"{frames} frames ({frames / options.fps:.1f} s at {options.fps} fps): {windows} window(s) of up to "
            f"25 frames x {options.steps} steps = {windows * options.steps} denoising passes.")
    if options.size in _PACE:
        text += (f" Expected time: about {_duration(_PACE[options.size] * windows * options.steps)} (pace measured by "
                 "the last run at this size).")
    else:
        text += " The expected time shows after a first run at this size has measured the pace."
    return text


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


PREVIEWS = {"landmarks": preview_landmarks, "summary": preview_summary}
