"""Talking faces tab (MOFA-Video): a portrait + a driving face video, speech audio (AniPortrait) or landmarks -> the
portrait performing it;
optional hybrid trajectories (the Trajectories tab's drawing, reused) and a landmark-mask brush."""
from __future__ import annotations

from typing import Any

import cv2
import gradio as gr
import numpy as np

from engine import Engine, JobResult, media, user_message
from engine.errors import AnimateError
from tabs import motion_drawing as draw
from tabs.widgets import (INPUTS_SCALE, OUTPUTS_SCALE, PictureInput, add_examples, intro, option_controls,
                          preview_value, run_controls, wire_task)

TASK = "face"
MASK_COLOUR = "#ffffff"


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    extras = [str(files[k]) for k in ("settings", "landmarks", "trajectories", "mask") if k in files]
    return str(files["video"]), str(files["landmark_video"]), extras


def _drawing_view(drawing: draw.Drawing) -> tuple[Any, ...]:
    """State, trajectory canvas and trajectories JSON shown for a drawing (empty without trajectories: no hybrid)."""
    return drawing, draw.render_overlay(drawing), draw.trajectories_json(drawing) if drawing.trajectories else ""


def painted_mask(editor: dict[str, Any] | None, shape: tuple[int, int] | None) -> np.ndarray | None:
    """The landmark-mask brush's strokes as a uint8 mask at the portrait's size (255 = painted), or None if nothing
    is painted."""
    if not editor or shape is None:
        return None
    layers = [np.asarray(layer) for layer in editor.get("layers") or [] if layer is not None]
    if not layers:
        return None
    painted = np.zeros(layers[0].shape[:2], bool)
    for layer in layers:
        if layer.ndim == 3 and layer.shape[-1] == 4:
            painted |= layer[..., 3] > 0
        else:
            painted |= layer.reshape(layer.shape[:2] + (-1,)).max(axis=-1) > 0
    if not painted.any():
        return None
    mask = painted.astype(np.uint8) * 255
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    with gr.Tab("Talking faces", id=TASK):
        intro("A portrait + a driving face video, speech audio or landmarks -> the portrait performs it "
              "(MOFA-Video; speech through AniPortrait).",
              "Upload a portrait and a **driving face video**: the portrait performs the video's expressions and "
              "head motion (applied to its own face shape) and keeps the video's sound. Or give **speech audio** "
              "(upload or record): the portrait talks to it (AniPortrait's renderer; head-pose strength, smoothing "
              "and a still head under the options; 25 fps). Power users can give a **landmarks file** (.npy, "
              "[N, 68, 2]) instead. Check the landmarks in the preview before animating. Optionally (hybrid), draw "
              "trajectories that move what lies outside the face, and paint the face region the landmarks drive.\n\n"
              "The examples' portrait is drawn: MediaPipe's real landmarker finds its face, but it shows how the "
              "tab works rather than what the models can do. They learnt from "
              "videos of real faces: a head-and-shoulders photo, facing the camera, works best.")
        drawing = gr.State(draw.Drawing())
        with gr.Row():
            with gr.Column(scale=INPUTS_SCALE):
                examples = gr.Column()
                with gr.Row():
                    portrait = PictureInput(label="Portrait", type="filepath", sources=["upload", "clipboard"],
                                            height=250)
                    # one driver per run: each under its own tab, the one given shown (an example's too)
                    with gr.Tabs(selected="driving") as drivers:
                        with gr.Tab("Face video", id="driving", render_children=True):
                            driving = gr.Video(label="Driving face video", sources=["upload", "webcam"],
                                               format=None, height=185)
                        with gr.Tab("Speech", id="audio", render_children=True):
                            audio = gr.Audio(label="Speech audio (wav, mp3, flac, ogg, m4a)",
                                             sources=["upload", "microphone"], type="filepath")
                        with gr.Tab("Landmarks", id="landmarks", render_children=True):
                            landmarks = gr.File(label="Landmarks (.npy, [N, 68, 2], portrait pixels)",
                                                file_types=[".npy"], type="filepath", height=200)
                summary = gr.Markdown()
                buttons = run_controls(engine, TASK)
                controls = option_controls(spec)
                with gr.Accordion("Hybrid: trajectories and landmark mask (optional)", open=False):
                    gr.Markdown("Click on the portrait to draw a trajectory (every click adds a point; **New "
                                "trajectory** starts another). Trajectories move what lies outside the landmark "
                                "mask; without a painted mask, the face region from the landmarks is used.")
                    canvas = gr.Image(label="Click to draw trajectories", type="numpy", interactive=False,
                                      height=360)
                    with gr.Row():
                        new_btn = gr.Button("New trajectory", size="sm")
                        undo_btn = gr.Button("Undo last point", size="sm")
                        delete_btn = gr.Button("Delete last trajectory", size="sm")
                        clear_btn = gr.Button("Clear", size="sm", variant="stop")
                    trajectories = gr.Code(None, language="json",
                                           label="Trajectories (JSON, portrait pixels; editable)")
                    brush = gr.ImageEditor(label="Landmark mask brush: paint the face region", type="numpy",
                                           sources=[], layers=False, transforms=[], height=360,
                                           brush=gr.Brush(colors=[MASK_COLOUR], color_mode="fixed"))
                    mask = gr.Image(label="Landmark mask (white = driven by the landmarks)", type="filepath",
                                    image_mode="L", interactive=False, height=160)
            with gr.Column(scale=OUTPUTS_SCALE):
                with gr.Row():
                    preview = gr.Video(label="Landmarks (preview, before any diffusion)", format=None, height=300)
                    video = gr.Video(label="Result", format=None, height=300)
                with gr.Tabs(selected="used"):
                    with gr.Tab("Landmarks used", id="used"):
                        landmark_video = gr.Video(label="Landmarks used", format=None, height=240)
                    with gr.Tab("Download", id="download", render_children=True):
                        download = gr.File(label="Settings and landmarks (repeat the run from the CLI)",
                                           file_count="multiple")
        with examples:
            add_examples(engine, TASK, {"image": portrait, "driving": driving, "audio": audio,
                                        "landmarks": landmarks, **controls})

        for name, given in (("driving", driving), ("audio", audio), ("landmarks", landmarks)):
            given.change(lambda value, name=name: gr.Tabs(selected=name) if value else gr.skip(), given, drivers,
                         api_visibility="private", queue=False)

        def on_portrait(path: str | None):
            try:
                image = media.read_image(path, keep_alpha=False) if path else None
            except AnimateError as exc:
                raise gr.Error(user_message(exc)) from exc
            return (*_drawing_view(draw.start(image)), image, None)

        portrait.change(on_portrait, portrait, [drawing, canvas, trajectories, brush, mask],
                        api_visibility="private")

        def on_click(current: draw.Drawing, evt: gr.SelectData):
            return _drawing_view(draw.add_point(current, evt.index[0], evt.index[1]))

        canvas.select(on_click, drawing, [drawing, canvas, trajectories], api_visibility="private")
        for button, action in ((new_btn, draw.new_trajectory), (undo_btn, draw.undo),
                               (delete_btn, draw.delete_last), (clear_btn, draw.clear)):
            button.click(lambda current, action=action: _drawing_view(action(current)), drawing,
                         [drawing, canvas, trajectories], api_visibility="private")

        def on_json(current: draw.Drawing, text: str):
            try:
                updated = draw.load_trajectories(current, engine.preview("motion", "trajectories", text=text).value)
            except AnimateError:
                return current, draw.render_overlay(current)  # keep typing; the run reports what is wrong
            return updated, draw.render_overlay(updated)

        trajectories.input(on_json, [drawing, trajectories], [drawing, canvas], api_visibility="private",
                           trigger_mode="always_last")

        def on_brush(current: draw.Drawing, editor: dict[str, Any] | None):
            shape = current.image.shape[:2] if current.image is not None else None
            return painted_mask(editor, shape)

        brush.change(on_brush, [drawing, brush], mask, api_visibility="private", trigger_mode="always_last")

        wire_task(engine, TASK, buttons.run, buttons.stop,
                  {"image": portrait, "driving": driving, "audio": audio, "landmarks": landmarks,
                   "trajectories": trajectories, "mask": mask},
                  controls, [video, landmark_video, download], _present, buttons.cost)

        size, fps, steps = controls["size"], controls["fps"], controls["steps"]
        head_pose, smoothing, still_head = controls["head_pose"], controls["smoothing"], controls["still_head"]

        def show_landmarks(image: str | None, driving: str | None = None, landmarks: str | None = None,
                           size: float = spec.option("size").default, fps: float = spec.option("fps").default,
                           audio: str | None = None, head_pose: float = spec.option("head_pose").default,
                           smoothing: float = spec.option("smoothing").default,
                           still_head: bool = spec.option("still_head").default) -> Any:
            driver = _one_driver(driving, audio, landmarks)
            if not image or not driver:
                return None
            motion = dict(head_pose=float(head_pose), smoothing=int(smoothing), still_head=bool(still_head))
            return preview_value(engine, TASK, "landmarks", image=image, size=int(size), fps=int(fps),
                                 **driver, **(motion if "audio" in driver else {}))

        gr.on([portrait.change, driving.change, audio.change, landmarks.change, size.release, fps.release,
               head_pose.release, smoothing.release, still_head.change], show_landmarks,
              [portrait, driving, landmarks, size, fps, audio, head_pose, smoothing, still_head], preview,
              api_name="face_landmarks_preview", trigger_mode="always_last")

        def show_summary(video_path: str | None, npy: str | None, count: float, short_side: float,
                         rate: float, speech: str | None = None) -> str:
            driver = _one_driver(video_path, speech, npy)
            if not driver:
                return ""
            try:
                shown = engine.preview(TASK, "summary", **driver, steps=int(count), size=int(short_side),
                                       fps=int(rate))
            except AnimateError as exc:
                return f"⚠️ {user_message(exc)}"
            return shown.value or shown.note

        gr.on([driving.change, audio.change, landmarks.change, steps.release, size.release, fps.release],
              show_summary, [driving, landmarks, steps, size, fps, audio], summary, api_visibility="private")


def _one_driver(driving: str | None, audio: str | None, landmarks: str | None) -> dict[str, str]:
    """The driver the previews show: the video, else the speech, else the landmarks file (a run refuses two)."""
    for name, value in (("driving", driving), ("audio", audio), ("landmarks", landmarks)):
        if value:
            return {name: value}
    return {}
