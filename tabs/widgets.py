"""UI pieces shared by the tabs: option controls built from the engine's Option specs, the Run/Stop wiring that makes a
task's API endpoint, previews, the GPU wrap."""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.components import Component

from engine import Engine, JobResult, Option, RemainingTime, TaskSpec, user_message
from engine.errors import AnimateError

log = logging.getLogger("tabs")


def option_control(option: Option) -> Component:
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


def option_controls(spec: TaskSpec, names: Iterable[str] | None = None) -> dict[str, Component]:
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
        result = engine.run(task, inputs, options, progress=RemainingTime(lambda f, m: progress(f, desc=m)),
                            owner=owner)
        for warning in result.settings.get("warnings", []):
            gr.Warning(warning, duration=None)
        return result
    except AnimateError as exc:
        raise gr.Error(user_message(exc), duration=None) from exc
    except Exception as exc:
        log.exception("%s failed", task)
        raise gr.Error(user_message(exc), duration=None) from exc


def named_handler(defaults: dict[str, Any], body: Callable[[dict[str, Any], gr.Request, gr.Progress], Any]) -> Callable:
    """An event handler with one parameter per value, named (the API shows and accepts those names) and with its
    default (inspect.Parameter.empty: required), then the request and progress Gradio injects. `body` gets the values
    as a dict by name."""
    def parameter(name: str, default: Any = inspect.Parameter.empty, annotation: Any = inspect.Parameter.empty):
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)

    signature = inspect.Signature([*(parameter(n, d) for n, d in defaults.items()),
                                   parameter("request", None, gr.Request), parameter("progress", gr.Progress())])

    def handler(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        request, progress = values.pop("request"), values.pop("progress")
        return body(values, request, progress)

    handler.__signature__ = signature
    handler.__annotations__ = {"request": gr.Request}  # Gradio finds the request parameter by its type hint
    return handler


def wire_task(engine: Engine, task: str, run_button: gr.Button, stop_button: gr.Button,
              inputs: dict[str, Component], options: dict[str, Component], outputs: list[Component],
              present: Callable[[JobResult], tuple[Any, ...]]) -> Any:
    """Run runs the task as API endpoint `/<task>`: its parameters are the task's inputs (required
    ones first, optional ones default to None) and options (default: the spec's), by name, in the spec's order. Stop
    sets the session's cancel token. An empty input ('' or no files) counts as not given. Returns the Run event."""
    spec = engine.task(task)
    inputs = _sorted(inputs, {i.name: (not i.required, n) for n, i in enumerate(spec.inputs)})
    options = _sorted(options, {o.name: n for n, o in enumerate(spec.options)})
    required = {i.name: i.required for i in spec.inputs}
    defaults = {name: inspect.Parameter.empty if required[name] else None for name in inputs}
    defaults.update({name: spec.option(name).default for name in options})

    def body(values: dict[str, Any], request: gr.Request, progress: gr.Progress) -> tuple[Any, ...]:
        given = {name: values[name] or None for name in inputs}
        chosen = {name: values[name] for name in options}
        return present(run_task(engine, task, given, chosen, progress, request))

    event = run_button.click(on_gpu(named_handler(defaults, body)), [*inputs.values(), *options.values()], outputs,
                             api_name=task, concurrency_limit=None)  # the engine's device slot serialises jobs
    stop_button.click(session_stopper(engine), None, None, api_visibility="private", queue=False)
    return event


def _sorted(components: dict[str, Component], order: dict[str, Any]) -> dict[str, Component]:
    """The components sorted by `order` of their names (a name the task does not have fails here, at build time)."""
    return {name: components[name] for name in sorted(components, key=order.__getitem__)}


def preview_value(engine: Engine, task: str, name: str, **values: Any) -> Any:
    """engine.preview's value for a component; a note (why there is none yet) shows as a toast, an error as gr.Error."""
    try:
        preview = engine.preview(task, name, **values)
    except AnimateError as exc:
        raise gr.Error(user_message(exc)) from exc
    if preview.note:
        gr.Info(preview.note)
    return preview.value


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
