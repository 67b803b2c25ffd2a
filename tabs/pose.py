"""Pose animation tab (MagicAnimate)."""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from engine import Engine, user_message
from engine.errors import AnimateError
from tabs.widgets import GPU_QUEUE, on_gpu, option_controls, run_task, wire_stop

TASK = "pose"


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    with gr.Tab("Pose animation", id=TASK):
        gr.Markdown("Upload a photo of a person and a DensePose motion video (the body-surface colouring of a dancer, "
                    "as in MagicAnimate's examples: 25 fps, square). The person in the photo performs the motion.")
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    image = gr.Image(label="Reference image", type="filepath", sources=["upload", "clipboard"],
                                     height=260)
                    fitted = gr.Image(label="As the model sees it", interactive=False, format="png", height=260)
                motion = gr.Video(label="Motion (DensePose video)", sources=["upload"], format=None, height=260)
                controls = option_controls(spec)
                with gr.Row():
                    run = gr.Button("Animate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column():
                video = gr.Video(label="Result", format=None)
                grid = gr.Video(label="Reference | motion | result", format=None)

        names = list(controls)

        # Gradio injects request/progress only into positional parameters, so they come first.
        def animate(request: gr.Request, progress: gr.Progress = gr.Progress(), *values: Any):
            image_path, motion_path, *option_values = values
            result = run_task(engine, TASK, {"image": image_path, "motion": motion_path},
                              dict(zip(names, option_values)), progress, request)
            files = result.files
            return str(files["video"]), str(files["grid"]) if "grid" in files else None

        event = run.click(on_gpu(animate), [image, motion, *controls.values()], [video, grid], api_name=TASK,
                          concurrency_id=GPU_QUEUE)
        wire_stop(engine, stop, event)

        def preview(image_path: str | None, mode: str, size: float) -> np.ndarray | None:
            from engine.pipelines.pose.job import fit_reference, read_reference

            if not image_path:
                return None
            try:
                return fit_reference(read_reference(image_path), int(size), mode)
            except AnimateError as exc:
                raise gr.Error(user_message(exc)) from exc

        gr.on([image.change, controls["fit"].change, controls["size"].release], preview,
              [image, controls["fit"], controls["size"]], fitted, api_name="pose_reference_preview")
