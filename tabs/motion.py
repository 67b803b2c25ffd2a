"""Trajectories tab (MOFA-Video): draw motion paths and a motion brush on a picture, preview the motion field, animate."""
from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from engine import Engine, JobResult, media, user_message
from engine.errors import AnimateError
from tabs import motion_drawing as draw
from tabs import zerogpu
from tabs.widgets import (INPUTS_SCALE, OUTPUTS_SCALE, PictureInput, add_examples, console_line, intro,
                          option_controls, remember_controls, run_controls, wire_task)

TASK = "motion"
POINTS, BRUSH = "Trajectory points", "Motion brush"
log = logging.getLogger("tabs")


def _view(drawing: draw.Drawing) -> tuple[Any, ...]:
    """State, canvas, trajectories JSON and brush mask shown for a drawing."""
    return drawing, draw.render_overlay(drawing), draw.trajectories_json(drawing), drawing.brush


def _present(result: JobResult) -> tuple[Any, ...]:
    files = result.files
    extras = [str(files[k]) for k in ("settings", "trajectories", "brush") if k in files]
    return str(files["video"]), str(files["flow"]), str(files["hint"]), extras


def build(engine: Engine) -> None:
    spec = engine.task(TASK)
    with gr.Tab("Trajectories", id=TASK):
        intro("Upload a picture, click on it to draw motion paths (and paint a motion brush), then **Animate** "
              "(MOFA-Video).",
              "Upload a picture, then click on it to draw a path: every click adds a point to the current "
              "trajectory; **New trajectory** starts another. Paint a **motion brush** (switch what clicks add) to "
              "make trajectories that start inside it move only the painted region. The motion field preview "
              "updates after each edit; **Animate** then renders the video. The shaded border of the canvas is "
              "cropped away at the working size: points there have no effect.")
        drawing = gr.State(draw.Drawing())
        with gr.Row():
            with gr.Column(scale=INPUTS_SCALE):
                examples = gr.Column()
                with gr.Row(equal_height=True):
                    picture = PictureInput(label="Picture", type="filepath", sources=["upload", "clipboard"],
                                           height=120, elem_id="motion-picture")
                    mode = gr.Radio([POINTS, BRUSH], value=POINTS, label="Clicks add")
                    radius = gr.Slider(1, 100, value=10, step=1, label="Brush radius (px)")
                canvas = gr.Image(label="Click to draw (the shaded border is cropped away at this size)",
                                  type="numpy", interactive=False, height=330, elem_id="motion-canvas")
                with gr.Row():
                    new_btn = gr.Button("New trajectory", size="sm", min_width=60)
                    undo_btn = gr.Button("Undo point", size="sm", min_width=60)
                    delete_btn = gr.Button("Delete trajectory", size="sm", min_width=60)
                    clear_brush_btn = gr.Button("Clear brush", size="sm", min_width=60)
                    clear_btn = gr.Button("Clear", size="sm", variant="stop", min_width=60)
                # an example's trajectories wait here until its picture is loaded (a new picture clears the drawing)
                pending = gr.Textbox(visible=False)
                buttons = run_controls(engine, TASK)
                controls = option_controls(spec)
                with gr.Accordion("Trajectories as JSON, motion brush mask", open=False):
                    trajectories = gr.Code("[]", language="json",
                                           label="Trajectories (JSON, picture pixels; editable)")
                    brush = gr.Image(label="Motion brush mask (white moves)", type="filepath", image_mode="L",
                                     interactive=False, height=160)
            with gr.Column(scale=OUTPUTS_SCALE):
                video = gr.Video(label="Result", format=None, height=360)
                flow_preview = gr.Image(label="Motion field preview (CMP, last frame)", interactive=False,
                                        height=260, elem_id="motion-preview")
                note = gr.Markdown()
                with gr.Accordion("Motion field video, hint, settings", open=False):
                    flow_video = gr.Video(label="Motion field video", format=None)
                    hint = gr.Image(label="Hint", interactive=False)
                    download = gr.File(label="Settings and drawings (repeat the run from the CLI)",
                                       file_count="multiple")
        with examples:
            add_examples(engine, TASK, {"image": picture, "trajectories": pending, **controls})

        view = [drawing, canvas, trajectories, brush]
        size = controls["size"]

        def refresh_preview(current: draw.Drawing, short_side: int):
            if current.image is None:
                return None, ""
            try:
                shown = engine.preview(TASK, "motion_field", image=current.image, trajectories=current.trajectories,
                                       brush=current.brush, size=int(short_side))
            except AnimateError as exc:
                return None, f"⚠️ {user_message(exc)}"
            except Exception as exc:  # shown to the user, details in the log
                log.exception("motion preview failed")
                return None, f"⚠️ {user_message(exc)}"
            return shown.value, shown.note

        preview_fn = zerogpu.gpu(refresh_preview, duration=30)

        def edited(event: Any) -> None:
            event.then(preview_fn, [drawing, size], [flow_preview, note], api_visibility="private",
                       trigger_mode="always_last")

        def on_picture_or_size(path: str | None, waiting: str, short_side: int, current: draw.Drawing,
                               shown_path: str | None):
            """A new picture starts a new drawing (with an example's waiting trajectories); a new size only moves
            the shaded border. One listener for both: a Size change made while a picture is still loading runs
            after it, on the drawing it made (two listeners raced and could drop the example's points)."""
            if path == shown_path:
                return *_view(draw.with_size(current, short_side)), waiting, shown_path
            try:
                image = media.read_image(path, keep_alpha=False) if path else None
            except AnimateError as exc:
                log.warning("motion picture: %s", console_line(exc))
                raise gr.Error(user_message(exc), print_exception=False) from exc
            fresh = draw.start(image, int(short_side))
            if waiting and image is not None:
                try:
                    fresh = draw.load_trajectories(fresh, engine.preview(TASK, "trajectories", text=waiting).value)
                except AnimateError as exc:
                    gr.Warning(user_message(exc))
            return *_view(fresh), "", path

        shown_picture = gr.State(None)
        edited(gr.on([picture.change, size.change], on_picture_or_size,
                     [picture, pending, size, drawing, shown_picture], [*view, pending, shown_picture],
                     api_visibility="private", trigger_mode="always_last"))

        def on_click(current: draw.Drawing, what: str, brush_radius: int, evt: gr.SelectData):
            x, y = evt.index[0], evt.index[1]
            if what == BRUSH:
                return _view(draw.stamp_brush(current, x, y, brush_radius))
            if current.image is not None and not draw.inside_kept_area(current, x, y):
                gr.Info("That point is in the shaded border, which the model never sees at this size: click "
                        "inside the bright part.")
            return _view(draw.add_point(current, x, y))

        edited(canvas.select(on_click, [drawing, mode, radius], view, api_visibility="private"))
        for button, action in ((new_btn, draw.new_trajectory), (undo_btn, draw.undo),
                               (delete_btn, draw.delete_last), (clear_btn, draw.clear),
                               (clear_brush_btn, draw.clear_brush)):
            edited(button.click(lambda current, action=action: _view(action(current)), drawing, view,
                                api_visibility="private"))

        def on_json(current: draw.Drawing, text: str):
            try:
                updated = draw.load_trajectories(current, engine.preview(TASK, "trajectories", text=text).value)
            except AnimateError:
                return current, draw.render_overlay(current)  # keep typing; the run reports what is wrong
            return updated, draw.render_overlay(updated)

        edited(trajectories.input(on_json, [drawing, trajectories], [drawing, canvas], api_visibility="private",
                                  trigger_mode="always_last"))

        wire_task(engine, TASK, buttons.run, buttons.stop,
                  {"image": picture, "trajectories": trajectories, "brush": brush}, controls,
                  [video, flow_video, hint, download], _present, buttons.cost)
        remember_controls(TASK, {"trajectories": pending})  # earlier runs' trajectories wait for their picture
