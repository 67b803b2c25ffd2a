"""UI pieces shared by the tabs: option controls built from the engine's Option specs, the job runner, the GPU wrap."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable

import gradio as gr

from engine import Engine, user_message
from engine.errors import AnimateError
from engine.jobs import JobResult
from engine.pipelines.base import RemainingTime
from engine.tasks import Option, TaskSpec

log = logging.getLogger("tabs")
GPU_QUEUE = "gpu"  # every GPU event shares this concurrency id: one job on the GPU at a time


def option_control(option: Option) -> gr.components.Component:
    label, info = option.title, option.help
    if option.kind == "bool":
        return gr.Checkbox(value=option.default, label=label, info=info)
    if option.choices:
        return gr.Dropdown(choices=list(option.choices), value=option.default, label=label, info=info)
    if option.kind in ("int", "float") and option.minimum is not None and option.maximum is not None:
        return gr.Slider(option.minimum, option.maximum, value=option.default, label=label, info=info,
                         step=option.step or (1 if option.kind == "int" else None))
    if option.kind in ("int", "float"):
        return gr.Number(value=option.default, label=label, info=info, precision=0 if option.kind == "int" else None)
    return gr.Textbox(value=option.default, label=label, info=info)


def option_controls(spec: TaskSpec, names: Iterable[str] | None = None) -> dict[str, gr.components.Component]:
    """Controls for the task's options; advanced ones go into a closed 'Advanced settings' accordion."""
    wanted = [spec.option(n) for n in names] if names is not None else list(spec.options)
    controls = {o.name: option_control(o) for o in wanted if not o.advanced}
    advanced = [o for o in wanted if o.advanced]
    if advanced:
        with gr.Accordion("Advanced settings", open=False):
            controls.update({o.name: option_control(o) for o in advanced})
    return controls


def run_task(engine: Engine, task: str, inputs: dict[str, Any], options: dict[str, Any],
             progress: gr.Progress, request: gr.Request | None) -> JobResult:
    """engine.run with UI progress, per-session cancellation, and errors shown as gr.Error."""
    owner = getattr(request, "session_hash", None)
    try:
        return engine.run(task, inputs, options, progress=RemainingTime(lambda f, m: progress(f, desc=m)),
                          owner=owner)
    except AnimateError as exc:
        raise gr.Error(user_message(exc), duration=None) from exc
    except Exception as exc:
        log.exception("%s failed", task)
        raise gr.Error(user_message(exc), duration=None) from exc


def on_gpu(fn: Callable[..., Any], duration: int = 300) -> Callable[..., Any]:
    """On a ZeroGPU Space, run fn on a GPU worker; elsewhere return fn unchanged."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return fn
    import spaces

    return spaces.GPU(duration=duration)(fn)


def session_stopper(engine: Engine) -> Callable[[gr.Request], None]:
    """A handler that cancels the calling session's job: it stops at its next step and writes nothing."""
    def stop(request: gr.Request) -> None:
        engine.cancel(request.session_hash)

    return stop


def wire_stop(engine: Engine, button: gr.Button, event: Any) -> None:
    """The Stop button sets the session's cancel token."""
    button.click(session_stopper(engine), None, None, api_visibility="private", queue=False)
