"""Character-sheet dancing tab (CoNR)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine import Engine, user_message
from engine.errors import AnimateError
from tabs.widgets import GPU_QUEUE, on_gpu, option_controls, run_task, wire_stop

TASK = "dance"
BACKGROUNDS = ("transparent", "colour", "image")


def _paths(files: Any) -> list[str]:
    if not files:
        return []
    return [f if isinstance(f, str) else f.name for f in (files if isinstance(files, list) else [files])]


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
                background_image = gr.Image(label="Background image", type="filepath", height=160, visible=False)
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

        names = list(controls)

        # Gradio injects request/progress only into positional parameters, so they come first.
        def animate(request: gr.Request, progress: gr.Progress = gr.Progress(), *values: Any):
            sheet_files, mask_files, pose_file, kind, colour_value, bg_image, *option_values = values
            options = dict(zip(names, option_values))
            options["background"] = {"colour": colour_value, "image": "image"}.get(kind, "transparent")
            inputs = {"sheets": _paths(sheet_files), "masks": _paths(mask_files), "poses": (_paths(pose_file) or [None])[0],
                      "background_image": bg_image}
            result = run_task(engine, TASK, inputs, options, progress, request)
            files = result.files
            frames = sorted(str(p) for p in Path(files["preview"]).glob("*.png"))
            playable = str(files["video"]) if "video" in files else None
            return playable, str(files.get("archive", files.get("video"))), frames

        event = run.click(on_gpu(animate), [sheets, masks, poses, background_kind, colour, background_image,
                                            *controls.values()],
                          [video, download, gallery], api_name=TASK, concurrency_id=GPU_QUEUE)
        wire_stop(engine, stop, event)

        def preview(sheet_files):
            from engine.pipelines.dance.job import cutout_previews

            try:
                return cutout_previews(engine, [Path(p) for p in _paths(sheet_files)])
            except AnimateError as exc:
                raise gr.Error(user_message(exc)) from exc

        preview_btn.click(preview, sheets, cut_preview, api_name="dance_cutout_preview")
