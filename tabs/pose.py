"""Pose animation tab (MagicAnimate), with DensePose extraction for a motion video that is an ordinary video (the
densepose task: its "Extract DensePose" button and API endpoint `/densepose` live here)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from engine import Engine, JobResult
from tabs.widgets import (INPUTS_SCALE, OUTPUTS_SCALE, PictureInput, add_examples, intro, option_controls,
                          preview_value, run_controls, wire_task)

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
        intro("A photo of a person + a motion video (DensePose, or any video of one person) -> the person "
              "performs the motion (MagicAnimate).",
              "Upload a photo of a person and a motion video: a DensePose video (the body-surface colouring of a "
              "dancer, as in MagicAnimate's examples: 25 fps, square) or any video of one person, whose DensePose "
              "is extracted first (shown beside the result, and alone with **Extract DensePose**). The person in "
              "the photo performs the motion. *As the model sees it* shows the photo after the square fit.")
        with gr.Row():
            with gr.Column(scale=INPUTS_SCALE):
                examples = gr.Column()
                with gr.Row():
                    image = PictureInput(label="Reference image", type="filepath", sources=["upload", "clipboard"],
                                         height=210, elem_id="pose-reference")
                    fitted = gr.Image(label="As the model sees it", interactive=False, format="png", height=210)
                    motion = gr.Video(label="Motion: DensePose or any video", sources=["upload"],
                                      format=None, height=210, elem_id="pose-motion")
                buttons = run_controls(engine, TASK)
                controls = option_controls(spec)
            with gr.Column(scale=OUTPUTS_SCALE):
                video = gr.Video(label="Result", format=None, height=360)
                with gr.Row():
                    grid = gr.Video(label="Reference | motion | result", format=None, height=200)
                    extracted = gr.Video(label="DensePose motion (extracted from the video)", format=None, height=200)
                with gr.Row():
                    extract = gr.Button("Extract DensePose", elem_id=f"{EXTRACTION}-run", size="sm", scale=0,
                                        min_width=160)
                    extraction_cost = gr.Markdown(elem_id=f"{EXTRACTION}-cost")
        with examples:
            add_examples(engine, TASK, {"image": image, "motion": motion, **controls})

        wire_task(engine, TASK, buttons.run, buttons.stop, {"image": image, "motion": motion}, controls,
                  [video, grid, extracted], _present, buttons.cost)
        shared = {o.name: controls[o.name] for o in extraction.options if o.name in controls}
        wire_task(engine, EXTRACTION, extract, buttons.stop, {"video": motion}, shared, [extracted],
                  _present_extraction, extraction_cost)

        def preview(image: str | None, fit: str, size: float) -> Any:
            return preview_value(engine, TASK, "reference", image=image, size=int(size), fit=fit)

        gr.on([image.change, controls["fit"].change, controls["size"].release], preview,
              [image, controls["fit"], controls["size"]], fitted, api_name="pose_reference_preview")
