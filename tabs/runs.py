"""Runs tab: the earlier runs in the outputs folder (from their settings.json: inputs, settings, results), and "Use
these settings again", which fills that task's tab with the run's options (seed included) and JSON inputs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components import Component

from engine import Engine
from engine.errors import InputError
from tabs.widgets import remembered_controls

COLUMNS = ["when", "task", "inputs", "settings", "results", "run time", "folder"]
SHOWN = 100  # newest runs listed


def _names(value: Any) -> str:
    """Input files as settings.json records them ({"name", "sha256"}, or lists of them), as their names."""
    if isinstance(value, list):
        return ", ".join(_names(v) for v in value)
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return "(given)" if value not in (None, "", []) else ""


def _changed(settings: dict[str, Any], engine: Engine) -> str:
    """The options that differ from the task's defaults, e.g. 'steps 10, seed 7'."""
    try:
        defaults = {o.name: o.default for o in engine.task(settings.get("task", "")).options}
    except InputError:  # a task this app no longer has: every option is news
        defaults = {}
    options = settings.get("options") or {}
    return ", ".join(f"{k} {v}" for k, v in options.items() if defaults.get(k, object()) != v) or "defaults"


def rows(engine: Engine, runs: list[dict[str, Any]]) -> list[list[Any]]:
    table = []
    for settings in runs:
        inputs = settings.get("inputs") or {}
        given = ", ".join(f"{k}: {_names(v)}" for k, v in inputs.items() if _names(v))
        seconds = (settings.get("timings_s") or {}).get("run")
        table.append([str(settings.get("created", "")).replace("T", " "), settings.get("task", ""), given,
                      _changed(settings, engine), ", ".join(sorted((settings.get("outputs") or {}).values())),
                      f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "",
                      Path(settings["folder"]).name])
    return table


def result_files(run: dict[str, Any]) -> list[str]:
    """The run's result files (folders such as a PNG sequence are left out), settings.json first."""
    folder = Path(run["folder"])
    files = [folder / "settings.json"] + [folder / p for p in (run.get("outputs") or {}).values()]
    return list(dict.fromkeys(str(f) for f in files if f.is_file()))


def details(run: dict[str, Any] | None) -> str:
    if run is None:
        return "Pick a run to see its settings."
    shown = {k: run.get(k) for k in ("task", "created", "inputs", "options", "device", "dtype", "timings_s",
                                       "warnings")}
    return f"`{run['folder']}`\n\n```json\n{json.dumps(shown, indent=2)}\n```"


def refill(run: dict[str, Any], controls: dict[str, dict[str, Component]]) -> dict[Component, Any]:
    """Updates that put a run's options and JSON inputs into its task's controls (every other control stays)."""
    updates: dict[Component, Any] = {}
    chosen = controls.get(run.get("task", ""), {})
    values = {**(run.get("options") or {}), **(run.get("inputs") or {})}
    for name, component in chosen.items():
        if name not in values or values[name] is None:
            continue
        value = values[name]
        updates[component] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return updates


def build(engine: Engine, tabs: gr.Tabs) -> None:
    controls = remembered_controls()
    targets = [component for task in controls.values() for component in task.values()]
    with gr.Tab("Runs", id="runs") as tab:
        gr.Markdown(f"Earlier runs in `{engine.config.outputs}`, newest first. Pick one to see its settings and "
                    "results; **Use these settings again** fills its tab (upload the same inputs, then run).")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="runs-table", label="Runs",
                             max_height=320)
        with gr.Row():
            pick = gr.Dropdown(label="Run", choices=[], elem_id="runs-pick", scale=3)
            refresh = gr.Button("Refresh", elem_id="runs-refresh", scale=1)
            reuse = gr.Button("Use these settings again", variant="primary", elem_id="runs-reuse", scale=1)
        with gr.Row():
            info = gr.Markdown(details(None), elem_id="runs-details")
            files = gr.File(label="Results", file_count="multiple", interactive=False)

        def listing() -> tuple[Any, Any]:
            runs = engine.history(limit=SHOWN)
            names = [Path(r["folder"]).name for r in runs]
            return rows(engine, runs), gr.update(choices=names, value=names[0] if names else None)

        def find(name: str | None) -> dict[str, Any] | None:
            return next((r for r in engine.history(limit=SHOWN) if Path(r["folder"]).name == name), None)

        def show(name: str | None) -> tuple[str, list[str]]:
            run = find(name)
            return details(run), result_files(run) if run else []

        def use_again(name: str | None) -> dict[Component, Any]:
            run = find(name)
            if run is None:
                raise gr.Error("Pick a run first.", print_exception=False)
            if run.get("task") not in controls:
                raise gr.Error(f"This app has no tab for the task '{run.get('task')}'.", print_exception=False)
            updates = refill(run, controls)
            seed = (run.get("options") or {}).get("seed")
            gr.Info(f"The {run['task']} tab has this run's settings{f' (seed {seed})' if seed is not None else ''}: "
                    "upload its inputs and run.")
            return {**updates, tabs: gr.Tabs(selected=run["task"])}

        gr.on([tab.select, refresh.click], listing, None, [table, pick], api_name="list_runs")
        pick.change(show, pick, [info, files], api_visibility="private")
        reuse.click(use_again, pick, [*targets, tabs], api_visibility="private")
