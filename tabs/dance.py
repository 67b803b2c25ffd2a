"""Character-sheet dancing tab (CoNR)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine import Engine, JobResult
from tabs.widgets import option_controls, preview_value, wire_task

TASK = "dance"
BACKGROUNDS = ("transparent", "colour", "image")


def background_option(kind: str, colour: str) -> str:
    """The `background` option the radio and the colour picker make: transparent, the colour (#RRGGBB) or image."""
    return colour if kind == "colour" else kind


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    frames = sorted(str(p) for p in Path(files["preview"]).glob("*.png"))
    playable = str(files["video"]) if "video" in files else None
    return playable, str(files.get("archive", files.get("video"))), frames


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    with gr.Tab("Character dance", id=TASK):
        gr.Markdown("Upload 1-8 views of one anime character (PNG with transparency, or any picture: it is cut out "
                    "automatically) and a pose sequence. Leave the poses empty to use the built-in example motion.")
        with gr.Row():
            with gr.Column():
                sheets = gr.File(label="Character sheets", file_count="multiple", file_types=["image"])
                with gr.Accordion("Cut-out: preview and optional masks", open=False):
                    cut_preview = gr.Gallery(label="Sheets as the model sees them", columns=4, height=200)
                    preview_btn = gr.Button("Preview cut-out", size="sm")
                    masks = gr.File(label="Masks (optional, one per sheet, white = character)", file_count="multiple",
                                    file_types=["image"])
                poses = gr.File(label="Poses: zip of UDP .npz frames, or a dance video / zip of frames",
                                file_types=[".zip", ".npz", "video"])
                with gr.Row():
                    background_kind = gr.Radio(list(BACKGROUNDS), value="transparent", label="Background")
                    colour = gr.ColorPicker(value="#ffffff", label="Colour")
                # The option itself: the radio and picker set it in the UI; API callers pass it directly.
                background = gr.Textbox(value=spec.option("background").default, label="Background",
                                        info=spec.option("background").help, visible=False)
                background_image = gr.Image(label="Background image", type="filepath", height=160, visible=False)
                gr.on([background_kind.change, colour.change], background_option, [background_kind, colour],
                      background, api_visibility="private", queue=False)
                background_kind.change(lambda kind: gr.update(visible=kind == "image"), background_kind,
                                       background_image, api_visibility="private", queue=False)
                controls = option_controls(spec, [o.name for o in spec.options if o.name != "background"])
                with gr.Row():
                    run = gr.Button("Animate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column():
                video = gr.Video(label="Result", format=None)
                download = gr.File(label="Download")
                gallery = gr.Gallery(label="Preview frames", columns=4)

        inputs = {"sheets": sheets, "masks": masks, "poses": poses, "background_image": background_image}
        wire_task(engine, TASK, run, stop, inputs, {**controls, "background": background},
                  [video, download, gallery], _present)

        def preview(sheets: list[str] | None) -> Any:
            return preview_value(engine, TASK, "cutout", sheets=sheets or [])

        preview_btn.click(preview, sheets, cut_preview, api_name="dance_cutout_preview")
