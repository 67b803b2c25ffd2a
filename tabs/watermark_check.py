"""A small panel: upload a picture or a video, read whether it carries the invisible watermark SV3D outputs carry."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine import Engine, archives, limits, user_message, watermark
from engine.errors import AnimateError

ABOUT = ("Stability AI's sampling script marks every SV3D (and SVD) frame it writes with an invisible "
         f"{len(watermark.BITS)}-bit watermark; this app's SV3D outputs carry the same mark (SV4D outputs do not, "
         "as in the original). Upload a "
         f"picture, or a video ({watermark.VIDEO_SAMPLES} frames are read), to count the matching bits; the verdict "
         "uses the original detector's thresholds. The mark is weak: on smooth or white areas (an object on a white "
         "background, as SV3D makes) even the original's own outputs mostly read as \"no watermark\", and video "
         "compression or resizing can erase it. \"No watermark\" is no proof that a file was not generated.")


def check(engine: Engine, file: str | None) -> str:
    """The verdict for one uploaded file, as Markdown; a file that cannot be read becomes a gr.Error."""
    if not file:
        raise gr.Error("Upload a picture or a video first.")
    try:
        with limits.applied(engine.config.limits):
            finding = watermark.check_file(file)
    except AnimateError as exc:
        raise gr.Error(user_message(exc), duration=None) from exc
    return f"**{Path(file).name}**: {finding.summary()}"


def build(engine: Engine) -> None:
    with gr.Accordion("Check a file for the watermark", open=False):
        gr.Markdown(ABOUT)
        with gr.Row():
            upload = gr.File(label="Picture or video", type="filepath",
                             file_types=[*archives.IMAGE_EXTENSIONS, *watermark.VIDEO_EXTENSIONS])
            with gr.Column():
                button = gr.Button("Check")
                verdict = gr.Markdown()
        button.click(lambda file: check(engine, file), upload, verdict, api_name="check_watermark")
