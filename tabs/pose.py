"""Pose animation tab (MagicAnimate), with DensePose extraction for a motion video that is an ordinary video (the
densepose task: its "Extract DensePose" button and API endpoint `/densepose` live here)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from engine import Engine, JobResult
from tabs.widgets import option_controls, preview_value, wire_task

TASK = "pose"
EXTRACTION = "densepose"


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    return (str(files["video"]), str(files["grid"]) if "grid" in files else None,
            str(files["densepose"]) if "densepose" in files else None)


def _present_extraction(result: JobResult) -> str:
    return str(result.files["video"])


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    extraction = engine.task(EXTRACTION)
    with gr.Tab("Pose animation", id=TASK):
        gr.Markdown("Upload a photo of a person and a motion video: a DensePose video (the body-surface colouring of "
                    "a dancer, as in MagicAnimate's examples: 25 fps, square) or any video of one person, whose "
                    "DensePose is extracted first (shown below, and alone with **Extract DensePose**). The person in "
                    "the photo performs the motion.")
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    image = gr.Image(label="Reference image", type="filepath", sources=["upload", "clipboard"],
                                     height=260)
                    fitted = gr.Image(label="As the model sees it", interactive=False, format="png", height=260)
                motion = gr.Video(label="Motion (DensePose video, or any video of a person)", sources=["upload"],
                                  format=None, height=260)
                controls = option_controls(spec)
                with gr.Row():
                    run = gr.Button("Animate", variant="primary")
                    extract = gr.Button("Extract DensePose")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column():
                video = gr.Video(label="Result", format=None)
                grid = gr.Video(label="Reference | motion | result", format=None)
                extracted = gr.Video(label="DensePose motion (extracted from the video)", format=None)

        wire_task(engine, TASK, run, stop, {"image": image, "motion": motion}, controls, [video, grid, extracted],
                  _present)
        shared = {o.name: controls[o.name] for o in extraction.options if o.name in controls}
        wire_task(engine, EXTRACTION, extract, stop, {"video": motion}, shared, [extracted], _present_extraction)

        def preview(image: str | None, fit: str, size: float) -> Any:
            return preview_value(engine, TASK, "reference", image=image, size=int(size), fit=fit)

        gr.on([image.change, controls["fit"].change, controls["size"].release], preview,
              [image, controls["fit"], controls["size"]], fitted, api_name="pose_reference_preview")
