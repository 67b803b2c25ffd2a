"""Video to 4D tab: a video of an object -> videos of it from new viewpoints, an orbit, a frame viewer (SV4D 2.0);
or one picture -> a 21-view orbit around it (SV3D_u / SV3D_p, "Image to 3D orbit")."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from engine import Engine, JobResult
from tabs.widgets import (INPUTS_SCALE, OUTPUTS_SCALE, add_examples, intro, option_controls, preview_value,
                          run_controls, wire_task)

TASK = "fourd"
CLIP_TYPES = ["video", ".gif", ".zip"]
MASK_TYPES = ["image", "video", ".gif", ".zip"]


def view_files(files: dict[str, Path]) -> list[str]:
    """The generated views' videos (view_01.mp4 ...), in view order."""
    return [str(files[name]) for name in sorted(files) if name.startswith("view_")]


def view_count(frames_zip: str | Path) -> tuple[int, int]:
    """(views, time steps) held in the run's frames.zip (view_00/000.png ...)."""
    with zipfile.ZipFile(frames_zip) as archive:
        names = [n for n in archive.namelist() if n.endswith(".png")]
    views = {n.split("/")[0] for n in names}
    return len(views), len(names) // max(1, len(views))


def frame_at(frames_zip: str | Path | None, view: float, time: float) -> np.ndarray | None:
    """One frame from the run's frames.zip: view 0 is the input's view, time 0 the first frame."""
    if not frames_zip:
        return None
    with zipfile.ZipFile(frames_zip) as archive:
        name = f"view_{int(view):02d}/{int(time):03d}.png"
        if name not in archive.namelist():
            return None
        with archive.open(name) as member:
            return np.asarray(Image.open(member).convert("RGB"))


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    frames_zip = str(files["frames"])
    views, steps = view_count(frames_zip)
    downloads = [str(files[name]) for name in ("frames", "cameras", "settings") if name in files]
    orbit_only = "grid" not in files  # SV3D: an orbit of views, no time axis
    return (str(files["orbit"]), None if orbit_only else str(files["grid"]), view_files(files),
            None if orbit_only else str(files["processed_input"]), downloads, frames_zip,
            gr.Slider(minimum=0, maximum=views - 1, value=views - 1 if orbit_only else 0, step=1),
            gr.Slider(minimum=0, maximum=max(1, steps - 1), value=0, step=1, interactive=steps > 1),
            frame_at(frames_zip, views - 1 if orbit_only else 0, 0),
            str(files["processed_input"]) if orbit_only else None)


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    with gr.Tab("Video to 4D", id=TASK):
        intro("A short video of one object -> videos of it from new viewpoints while it moves (SV4D 2.0 / 1.0); or "
              "one picture -> 21 views around it (SV3D, under **Image to 3D orbit**).",
              "Upload a short video of one object (a video file, a GIF, or a .zip of frames). 21 frames are taken "
              "from it, the background is removed, and SV4D 2.0 (or SV4D 1.0) films the object from new viewpoints "
              "while it moves. Or, with the model sv3d_u / sv3d_p, upload one picture under **Image to 3D orbit**: "
              "SV3D makes 21 views around the object (sv3d_p along the elevation and azimuths you give). Check the "
              "processed input first: the object should be whole and centred. The results: the orbit, every view "
              "over time, one video per view, the processed input, a frame viewer and the downloads, each under "
              "its own tab on the right.")
        with gr.Row():
            with gr.Column(scale=INPUTS_SCALE):
                examples_slot = gr.Column()
                video = gr.File(label="Video of the object (models sv4d2, sv4d2_8views, sv4d)", file_types=CLIP_TYPES,
                                height=140)
                with gr.Accordion("Image to 3D orbit (models sv3d_u, sv3d_p)", open=False):
                    with gr.Row():
                        image = gr.Image(label="Picture of the object (one with transparency is used as it is)",
                                         type="filepath", image_mode=None, height=220)
                        image_preview = gr.Image(label="The picture as SV3D will see it", height=220)
                    image_preview_btn = gr.Button("Preview background removal and framing", size="sm")
                    gr.Markdown("sv3d_p cameras: `elevation` for every view, or 21 `elevations`; 21 `azimuths` "
                                "(the last is the input's own view; empty: 360/21 degrees apart). Both lists are "
                                "in the advanced options, as numbers separated by commas.")
                with gr.Accordion("Processed input: preview and optional mask", open=False):
                    processed_preview = gr.Image(label="The 21 frames as the model will see them", height=260)
                    preview_btn = gr.Button("Preview background removal and framing", size="sm")
                    mask = gr.File(label="Mask (optional; white = object): one picture, or one mask per video "
                                         "frame as a video/GIF/.zip", file_types=MASK_TYPES)
                buttons = run_controls(engine, TASK, "Generate views")
                controls = option_controls(spec)
                with gr.Accordion("Model config (optional)", open=False):
                    model_config = gr.File(label="Inference-config YAML of the original repository's format, for "
                                                 "a checkpoint of other sizes", file_types=[".yaml", ".yml"])
            with gr.Column(scale=OUTPUTS_SCALE):
                with gr.Tabs(selected="orbit"):
                    with gr.Tab("Orbit", id="orbit"):
                        orbit = gr.Video(label="Orbit: the camera goes around the object while it moves", format=None,
                                         height=420)
                    with gr.Tab("All views", id="grid", render_children=True):
                        grid = gr.Video(label="All views over time (view 0 = the input)", format=None, height=420)
                    with gr.Tab("Per view", id="views", render_children=True):
                        view_videos = gr.Gallery(label="One video per new view", columns=4, height=420)
                    with gr.Tab("Processed input", id="processed", render_children=True):
                        processed = gr.Video(label="Processed input (view 0)", format=None, height=240)
                        processed_image = gr.Image(label="Processed input (SV3D: the last view)", height=240)
                    with gr.Tab("Viewer", id="viewer", render_children=True):
                        with gr.Group():
                            frames_zip = gr.State(None)
                            viewer = gr.Image(label="Viewer", height=340)
                            view_slider = gr.Slider(0, 1, value=0, step=1, label="View (0 = the input)")
                            time_slider = gr.Slider(0, 20, value=0, step=1, label="Time (frame)")
                    with gr.Tab("Download", id="download", render_children=True):
                        download = gr.File(label="Download: every frame as PNG, cameras, settings",
                                           file_count="multiple")

        inputs = {"video": video, "image": image, "mask": mask, "model_config": model_config}
        with examples_slot:
            add_examples(engine, TASK, {**inputs, **controls})
        wire_task(engine, TASK, buttons.run, buttons.stop, inputs, controls,
                  [orbit, grid, view_videos, processed, download, frames_zip, view_slider, time_slider, viewer,
                   processed_image], _present, buttons.cost)
        gr.on([view_slider.change, time_slider.change], frame_at, [frames_zip, view_slider, time_slider], viewer,
              api_visibility="private", queue=False)

        def preview(video: str | None, mask: str | None, remove_bg: bool, start_frame: float, size: float) -> Any:
            if not video:
                raise gr.Error("Upload a video first.")
            return preview_value(engine, TASK, "input", video=video, mask=mask or None, remove_bg=remove_bg,
                                 start_frame=int(start_frame), size=int(size))

        preview_btn.click(preview, [video, mask, controls["remove_bg"], controls["start_frame"], controls["size"]],
                          processed_preview, api_name="fourd_input_preview")

        def preview_picture(image: str | None, mask: str | None, remove_bg: bool, size: float) -> Any:
            if not image:
                raise gr.Error("Upload a picture first.")
            return preview_value(engine, TASK, "image", image=image, mask=mask or None, remove_bg=remove_bg,
                                 size=int(size))

        image_preview_btn.click(preview_picture, [image, mask, controls["remove_bg"], controls["size"]], image_preview,
                                api_name="fourd_image_preview")
