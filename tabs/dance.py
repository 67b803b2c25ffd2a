"""Character-sheet dancing tab (CoNR)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine import Engine, JobResult, media, user_message
from engine.errors import AnimateError
from tabs.widgets import (INPUTS_SCALE, OUTPUTS_SCALE, PictureInput, add_examples, intro, option_controls,
                          preview_value, run_controls, wire_task)

TASK = "dance"


def background_option(kind: str, colour: str) -> str:
    """The `background` option the radio and the colour picker make: transparent, the colour (#RRGGBB) or image."""
    return colour if kind == "colour" else kind


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    frames = sorted(str(p) for p in Path(files["preview"]).glob("*.png"))
    playable = str(files["video"]) if "video" in files else None
    return playable, str(files.get("archive", files.get("video"))), frames


def background_choices(fmt: str) -> list[tuple[str, str]]:
    """The background radio's (label, value) pairs: mp4 has no transparency, so there 'transparent' reads as the
    black it becomes (as the original)."""
    first = "black (mp4 has no transparency)" if fmt == "mp4" else "transparent"
    return [(first, "transparent"), ("colour", "colour"), ("image", "image")]


def swatch(fmt: str, kind: str, colour: str) -> str:
    """A small square showing the background the result gets."""
    if kind == "image":
        return "<span>Background: the uploaded image.</span>"
    if kind == "colour":
        fill, text = colour, f"colour {colour}"
    elif fmt == "mp4":
        fill, text = "#000000", "black (mp4 cannot keep transparency; choose webm or png to keep it)"
    else:
        fill, text = "repeating-conic-gradient(#ccc 0 25%, #fff 0 50%) 0 0/12px 12px", "transparent"
    return (f'<div style="display:flex;align-items:center;gap:8px"><span style="display:inline-block;flex:none;'
            f'width:28px;height:28px;border:1px solid #888;border-radius:4px;background:{fill}"></span>'
            f"<span>Background: {text}</span></div>")


def sheet_thumbnails(paths: list[str] | None) -> list[tuple[str, str]]:
    """The uploaded sheets as gallery thumbnails with their names (what cannot be read shows as a message)."""
    shown = []
    for path in paths or []:
        try:
            media.read_image(path, what="Character sheet")
        except AnimateError as exc:
            gr.Warning(user_message(exc))
            continue
        shown.append((path, Path(path).name))
    return shown


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    fmt_default = spec.option("format").default
    with gr.Tab("Character dance", id=TASK):
        intro("1-8 views of one anime character + a pose sequence -> the character dances (CoNR).",
              "Upload 1-8 views of one anime character (PNG with transparency, or any picture: it is cut out "
              "automatically) and a pose sequence: a zip of UDP .npz frames, or a dance video / zip of frames. "
              "Leave the poses empty to use the built-in example motion. The background: transparent (webm, png "
              "frames; mp4 has no transparency and turns it black), a colour, or an image.")
        with gr.Row():
            with gr.Column(scale=INPUTS_SCALE):
                examples = gr.Column()
                with gr.Row():
                    sheets = gr.File(label="Character sheets", file_count="multiple", file_types=["image"],
                                     height=130)
                    poses = gr.File(label="Poses: .zip of UDP frames or a dance video (empty: built-in motion)",
                                    file_types=[".zip", ".npz", "video"], height=130)
                thumbnails = gr.Gallery(label="Sheets uploaded", columns=8, height=100, allow_preview=False,
                                        elem_id="dance-sheets")
                with gr.Accordion("Cut-out: preview and optional masks", open=False):
                    cut_preview = gr.Gallery(label="Sheets as the model sees them", columns=4, height=200)
                    preview_btn = gr.Button("Preview cut-out", size="sm")
                    masks = gr.File(label="Masks (optional, one per sheet, white = character)", file_count="multiple",
                                    file_types=["image"])
                buttons = run_controls(engine, TASK)
                controls = option_controls(spec, [o.name for o in spec.options
                                                   if o.name != "background" and not o.advanced])
                with gr.Row(equal_height=True):
                    background_kind = gr.Radio(background_choices(fmt_default), value="transparent",
                                               label="Background")
                    colour = gr.ColorPicker(value="#ffffff", label="Colour", visible=False)
                    shown = gr.HTML(swatch(fmt_default, "transparent", "#ffffff"), elem_id="dance-background-swatch")
                controls.update(option_controls(spec, [o.name for o in spec.options if o.advanced]))
                # The option itself: the radio and picker set it in the UI; API callers pass it directly.
                background = gr.Textbox(value=spec.option("background").default, label="Background",
                                        info=spec.option("background").help, visible=False)
                background_image = PictureInput(label="Background image", type="filepath", height=160, visible=False)
            with gr.Column(scale=OUTPUTS_SCALE):
                video = gr.Video(label="Result", format=None, height=360)
                with gr.Tabs(selected="frames"):
                    with gr.Tab("Preview frames", id="frames"):
                        gallery = gr.Gallery(label="Preview frames", columns=6, height=200)
                    with gr.Tab("Download", id="download", render_children=True):
                        download = gr.File(label="Download", height=110)
        with examples:
            add_examples(engine, TASK, {"sheets": sheets, "masks": masks, "poses": poses, **controls,
                                        "background": background})

        fmt = controls["format"]
        gr.on([background_kind.change, colour.change], background_option, [background_kind, colour],
              background, api_visibility="private", queue=False)
        gr.on([background_kind.change, colour.change, fmt.change], swatch, [fmt, background_kind, colour], shown,
              api_visibility="private", queue=False)
        fmt.change(lambda f, kind: gr.update(choices=background_choices(f), value=kind), [fmt, background_kind],
                   background_kind, api_visibility="private", queue=False)
        background_kind.change(lambda kind: (gr.update(visible=kind == "image"), gr.update(visible=kind == "colour")),
                               background_kind, [background_image, colour], api_visibility="private", queue=False)
        background.change(_kind_of, background, [background_kind, colour], api_visibility="private", queue=False)
        sheets.change(sheet_thumbnails, sheets, thumbnails, api_visibility="private", queue=False)

        inputs = {"sheets": sheets, "masks": masks, "poses": poses, "background_image": background_image}
        wire_task(engine, TASK, buttons.run, buttons.stop, inputs, {**controls, "background": background},
                  [video, download, gallery], _present, buttons.cost)

        def preview(sheets: list[str] | None) -> Any:
            return preview_value(engine, TASK, "cutout", sheets=sheets or [])

        preview_btn.click(preview, sheets, cut_preview, api_name="dance_cutout_preview")


def _kind_of(background: str) -> tuple[Any, Any]:
    """The radio and picker for a background option set from elsewhere (an example, earlier settings)."""
    if background in ("transparent", "image"):
        return gr.update(value=background), gr.skip()
    return gr.update(value="colour"), gr.update(value=background)
