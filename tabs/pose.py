"""Pose animation tab (MagicAnimate)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from engine import Engine, JobResult
from tabs.widgets import option_controls, preview_value, wire_task

TASK = "pose"


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    return str(files["video"]), str(files["grid"]) if "grid" in files else None


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

        wire_task(engine, TASK, run, stop, {"image": image, "motion": motion}, controls, [video, grid], _present)

        def preview(image: str | None, fit: str, size: float) -> Any:
            return preview_value(engine, TASK, "reference", image=image, size=int(size), fit=fit)

        gr.on([image.change, controls["fit"].change, controls["size"].release], preview,
              [image, controls["fit"], controls["size"]], fitted, api_name="pose_reference_preview")
