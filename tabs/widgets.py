"""UI pieces shared by the tabs: option controls built from the engine's Option specs, the Run/Stop wiring that makes a
task's API endpoint (on ZeroGPU through tabs.zerogpu), the cost box, examples, picture inputs that explain a bad upload,
previews."""
from __future__ import annotations

import collections
import inspect
import logging
import threading
import weakref
from abc import ABCMeta
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.components import Component
from gradio.context import Context
from PIL import UnidentifiedImageError

from engine import (CancelToken, Engine, JobCancelled, JobResult, Option, RemainingTime, TaskSpec, human_size, media,
                    user_message)
from engine.errors import AnimateError
from tabs import zerogpu

log = logging.getLogger("tabs")
STOP_LABEL, STOPPING = "Stop", "Stopping..."
CANCELLED = "Cancelled, nothing was written."
_CONTROLS: "weakref.WeakKeyDictionary[gr.Blocks, dict[str, dict[str, Component]]]" = weakref.WeakKeyDictionary()


# A task tab's two columns: inputs and settings (four settings to a row) a little wider than the results.
INPUTS_SCALE, OUTPUTS_SCALE = 6, 5
MAX_SLIDER_SPAN = 100_000  # a wider range (a seed's 2**32) is a number field: no slider can be dragged through it
OPTION_CLASS = "option"  # the CSS in tabs/__init__.py shows such a control's help on one line, all of it on hover


def option_control(option: Option) -> Component:
    label, info, shown = option.title, option.help, {"elem_classes": [OPTION_CLASS]}
    if option.kind == "bool":
        return gr.Checkbox(value=option.default, label=label, info=info, **shown)
    if option.choices:
        return gr.Dropdown(choices=list(option.choices), value=option.default, label=label, info=info, **shown)
    bounded = option.minimum is not None and option.maximum is not None
    if option.kind in ("int", "float") and bounded and option.maximum - option.minimum <= MAX_SLIDER_SPAN:
        return gr.Slider(option.minimum, option.maximum, value=option.default, label=label, info=info,
                         step=option.step or (1 if option.kind == "int" else None), **shown)
    if option.kind in ("int", "float"):  # unbounded, or too wide a range to drag through (a seed)
        return gr.Number(value=option.default, label=label, info=info, precision=0 if option.kind == "int" else None,
                         minimum=option.minimum, maximum=option.maximum, **shown)
    return gr.Textbox(value=option.default, label=label, info=info, **shown)


def option_controls(spec: TaskSpec, names: Iterable[str] | None = None, columns: int = 4) -> dict[str, Component]:
    """Controls for the task's options, `columns` to a row; advanced ones go into a closed 'Advanced settings'
    accordion."""
    wanted = [spec.option(n) for n in names] if names is not None else list(spec.options)
    controls = _in_rows([o for o in wanted if not o.advanced], columns)
    advanced = [o for o in wanted if o.advanced]
    if advanced:
        with gr.Accordion("Advanced settings", open=False):
            controls.update(_in_rows(advanced, columns))
    return controls


def _in_rows(options: list[Option], columns: int) -> dict[str, Component]:
    controls = {}
    for start in range(0, len(options), columns):
        with gr.Row(equal_height=True):
            controls.update({o.name: option_control(o) for o in options[start:start + columns]})
    return controls


class _NoStubMeta(type(gr.Image)):
    """Gradio's component metaclass minus its side effect of writing a .pyi stub beside the defining module. Its
    other work (wrapping a new __init__, registering new EVENTS) has nothing to do for a subclass that adds neither."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> type:
        if "__init__" in attrs or "EVENTS" in attrs:
            raise TypeError(f"{name}: use Gradio's own metaclass for a component with a new __init__ or EVENTS")
        return ABCMeta.__new__(mcs, name, bases, attrs)


class PictureInput(gr.Image, metaclass=_NoStubMeta):
    """gr.Image whose upload of something that is not a picture says so, naming the file and the fix (a plain
    gr.Image fails inside Gradio's preprocess with an empty "Error" badge)."""

    is_template = True  # the browser renders it as an Image

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            name = getattr(payload, "orig_name", None) or Path(str(getattr(payload, "path", "") or "upload")).name
            message = f"'{name}' is not a picture this app can read. {media.IMAGE_HINT}"
            if _first_refusal(str(getattr(payload, "path", name))):  # several events read the same upload
                log.warning("upload refused: %s", message)
            raise gr.Error(message, print_exception=False) from exc


_REFUSED: "collections.OrderedDict[str, None]" = collections.OrderedDict()
_REFUSED_LOCK = threading.Lock()


def _first_refusal(path: str, remembered: int = 64) -> bool:
    """Whether this upload was not refused before (so the console gets one line per bad upload)."""
    with _REFUSED_LOCK:
        if path in _REFUSED:
            return False
        _REFUSED[path] = None
        while len(_REFUSED) > remembered:
            _REFUSED.popitem(last=False)
        return True


@dataclass
class RunControls:
    """A tab's Run and Stop buttons and the cost estimate shown next to them."""

    run: gr.Button
    stop: gr.Button
    cost: gr.Markdown


def intro(summary: str, details: str) -> gr.Markdown:
    """A tab's one-line introduction with the rest under a closed "How it works" beside it (a desktop window keeps
    its room for the work)."""
    return gr.Markdown(f"{summary} <details><summary>How it works</summary>\n\n{details}\n\n</details>",
                       elem_classes=["intro"])


def run_controls(engine: Engine, task: str, label: str = "Animate") -> RunControls:
    """Run and Stop in a row, the time and memory estimate under them (wire_task keeps it current)."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=f"{task}-run")
        stop = gr.Button(STOP_LABEL, variant="stop", elem_id=f"{task}-stop")
    cost = gr.Markdown(lambda: estimate_text(engine, task, {}, {}), elem_id=f"{task}-cost", elem_classes=["cost"])
    return RunControls(run, stop, cost)


def estimate_text(engine: Engine, task: str, inputs: dict[str, Any], options: dict[str, Any]) -> str:
    """The cost box's text for these inputs and options (a problem with them shows instead)."""
    try:
        found = engine.estimate(task, {k: v for k, v in inputs.items() if v}, options)
    except AnimateError as exc:
        return f"⚠️ {user_message(exc)}"
    return found.text() if found is not None else ""


def run_task(engine: Engine, task: str, inputs: dict[str, Any], options: dict[str, Any],
             progress: gr.Progress, request: gr.Request | None) -> JobResult:
    """engine.run with UI progress, per-session cancellation, and errors shown as gr.Error (one line in the
    console for an error the user can fix; the traceback only for a bug). Once Stop is pressed the progress says
    so and the time-left estimate stops."""
    owner = getattr(request, "session_hash", None)
    cancel = CancelToken()

    def report(fraction: float, message: str) -> None:
        progress(fraction, desc=STOPPING if cancel.cancelled else message)

    try:
        result = engine.run(task, inputs, options, progress=RemainingTime(report), cancel=cancel, owner=owner)
        for warning in result.settings.get("warnings", []):
            gr.Warning(warning, duration=None)
        return result
    except JobCancelled:
        raise
    except AnimateError as exc:
        log.warning("%s: %s", task, console_line(exc))
        raise gr.Error(user_message(exc), duration=None, print_exception=False) from exc
    except Exception as exc:
        log.exception("%s failed", task)
        raise gr.Error(user_message(exc), duration=None, print_exception=False) from exc


def console_line(exc: BaseException) -> str:
    """An error as one console line."""
    return " ".join(user_message(exc).split())


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
              present: Callable[[JobResult], tuple[Any, ...]], cost: gr.Markdown | None = None) -> Any:
    """Run runs the task as API endpoint `/<task>`: its parameters are the task's inputs (required
    ones first, optional ones default to None) and options (default: the spec's), by name, in the spec's order. Stop
    sets the session's cancel token and reads "Stopping..." until the run ends; a cancelled run is reported as
    information and leaves the outputs as they were. The cost estimate (`cost`, else a new box here) follows the
    inputs and options. An empty input ('' or no files) counts as not given. Returns the Run event."""
    spec = engine.task(task)
    inputs = _sorted(inputs, {i.name: (not i.required, n) for n, i in enumerate(spec.inputs)})
    options = _sorted(options, {o.name: n for n, o in enumerate(spec.options)})
    required = {i.name: i.required for i in spec.inputs}
    defaults = {name: inspect.Parameter.empty if required[name] else None for name in inputs}
    defaults.update({name: spec.option(name).default for name in options})
    _name_elements(task, run_button, stop_button, outputs)
    remember_controls(task, {**{n: c for n, c in inputs.items() if _kind(spec, n) == "json"}, **options})

    def body(values: dict[str, Any], request: gr.Request, progress: gr.Progress) -> Any:
        given = {name: values[name] or None for name in inputs}
        chosen = {name: values[name] for name in options}
        try:
            return present(run_task(engine, task, given, chosen, progress, request))
        except JobCancelled:
            log.info("%s: cancelled, nothing was written", task)
            gr.Info(CANCELLED)
            return tuple(gr.skip() for _ in outputs) if len(outputs) > 1 else gr.skip()

    event = run_button.click(zerogpu.task_handler(engine, task, named_handler(defaults, body)),
                             [*inputs.values(), *options.values()], outputs, api_name=task,
                             concurrency_limit=None,  # the engine's device slot serialises jobs
                             show_progress_on=outputs[:1] or None)  # progress once, on the main result
    label = stop_button.value

    def stopping(request: gr.Request) -> Any:
        return gr.update(value=STOPPING, interactive=False) if stop_session(engine, request.session_hash) else gr.skip()

    stop_button.click(stopping, None, stop_button, api_visibility="private", queue=False)
    event.then(lambda: gr.update(value=label, interactive=True), None, stop_button, api_visibility="private",
               queue=False)

    if cost is None:
        cost = gr.Markdown(lambda: estimate_text(engine, task, {}, {}), elem_id=f"{task}-cost")
    watched = [*inputs.values(), *options.values()]

    def update_cost(*values: Any) -> str:
        return estimate_text(engine, task, dict(zip(inputs, values[:len(inputs)])),
                             dict(zip(options, values[len(inputs):])))

    gr.on([c.change for c in watched], update_cost, watched, cost, api_visibility="private", queue=False,
          trigger_mode="always_last")
    return event


def _kind(spec: TaskSpec, name: str) -> str:
    return next(i.kind for i in spec.inputs if i.name == name)


def _name_elements(task: str, run: gr.Button, stop: gr.Button, outputs: list[Component]) -> None:
    """The element ids the browser tests find (kept when a tab set its own)."""
    for component, name in ((run, "run"), (stop, "stop"), (outputs[0] if outputs else None, "result")):
        if component is not None and not component.elem_id:
            component.elem_id = f"{task}-{name}"


def remember_controls(task: str, controls: dict[str, Component]) -> None:
    """Note the controls a task's settings fill (options, JSON inputs), per app: the Runs tab refills them."""
    root = Context.root_block
    if root is not None:
        _CONTROLS.setdefault(root, {}).setdefault(task, {}).update(controls)


def remembered_controls() -> dict[str, dict[str, Component]]:
    """The controls noted for each task in the app being built (see remember_controls)."""
    return _CONTROLS.get(Context.root_block, {}) if Context.root_block is not None else {}


def add_examples(engine: Engine, task: str, components: dict[str, Component], label: str = "Examples") -> Any:
    """One-click examples (never run or cached ahead: clicking fills the inputs and options). components: the tab's
    input and option controls by the task's names; the examples fill the ones they name, the others get the
    option's default. Published demo inputs not cached yet get a button that fetches them on purpose. None when the
    task has no example."""
    rows = engine.examples(task)
    if not rows:
        return None
    spec = engine.task(task)
    used = [name for name in components if any(name in e.inputs or name in e.options for e in rows)]

    def value(example: Any, name: str) -> Any:
        if name in example.inputs:
            return example.inputs[name]
        if name in example.options:
            return example.options[name]
        return spec.option(name).default if name in {o.name for o in spec.options} else None

    def samples(found: list[Any]) -> list[list[Any]]:
        return [[value(e, n) for n in used] for e in found]

    shown = gr.Examples(samples(rows), [components[n] for n in used], label=label,
                        example_labels=[e.label for e in rows], cache_examples=False, elem_id=f"{task}-examples",
                        api_visibility="private")
    _offer_published(engine, task, shown, lambda found: gr.Dataset(samples=samples(found),
                                                                   sample_labels=[e.label for e in found]))
    return shown


def _offer_published(engine: Engine, task: str, shown: Any, dataset: Callable[[list[Any]], gr.Dataset]) -> None:
    """A small button that downloads the task's published demo inputs (a checkpoint of their own, never fetched
    just because the tab opened) with progress, then lists them among the examples. Absent offline or when cached
    at launch; a page opened after they arrived lists them at once."""
    def missing() -> list[str]:
        return [name for name in engine.example_checkpoints(task) if not engine.hub.status(name).cached]

    wanted = missing()
    if not wanted or engine.hub.offline:
        return
    size = human_size(sum(engine.hub.spec(name).size_mb for name in wanted) * 2**20)
    fetch_button = gr.Button(f"Get the published examples ({size})", size="sm", elem_id=f"{task}-get-examples")

    def fetch(progress: gr.Progress = gr.Progress()) -> tuple[gr.Dataset, Any]:
        names = missing()
        try:
            for i, name in enumerate(names):
                engine.checkpoint(name, lambda f, m, i=i: progress((i + f) / len(names), desc=m), task)
        except AnimateError as exc:
            log.warning("%s examples: %s", task, console_line(exc))
            raise gr.Error(user_message(exc), print_exception=False) from exc
        return dataset(engine.examples(task)), gr.update(visible=False)

    def listed() -> tuple[gr.Dataset, Any]:
        return dataset(engine.examples(task)), gr.update(visible=bool(missing()))

    fetch_button.click(fetch, None, [shown.dataset, fetch_button], api_visibility="private")
    Context.root_block.load(listed, None, [shown.dataset, fetch_button], api_visibility="private", queue=False)


def _sorted(components: dict[str, Component], order: dict[str, Any]) -> dict[str, Component]:
    """The components sorted by `order` of their names (a name the task does not have fails here, at build time)."""
    return {name: components[name] for name in sorted(components, key=order.__getitem__)}


def preview_value(engine: Engine, task: str, name: str, **values: Any) -> Any:
    """engine.preview's value for a component; a note (why there is none yet) shows as a toast, an error as gr.Error."""
    try:
        preview = engine.preview(task, name, **values)
    except AnimateError as exc:
        log.warning("%s preview: %s", task, console_line(exc))
        raise gr.Error(user_message(exc), print_exception=False) from exc
    if preview.note:
        gr.Info(preview.note)
    return preview.value


def session_stopper(engine: Engine) -> Callable[[gr.Request], None]:
    """A handler that cancels the calling session's job: it stops at its next step and writes nothing."""
    def stop(request: gr.Request) -> None:
        stop_session(engine, request.session_hash)

    return stop


def stop_session(engine: Engine, session: Any) -> bool:
    """Cancel the session's job, here or on a ZeroGPU worker (a forked copy of the engine). True if one ran."""
    return engine.cancel(session) or zerogpu.request_stop(session)
