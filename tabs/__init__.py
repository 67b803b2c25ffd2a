"""The Gradio UI: a header, a settings sidebar, one tab per task that has a module tabs/<task>.py (in the tasks' order),
then the Runs (history) and Models tabs."""
from __future__ import annotations

import importlib
import importlib.util

import gradio as gr

from engine import Engine
from tabs.widgets import session_stopper

THEME = gr.themes.Soft()
# A desktop window (1440x900): a compact header and intros, each option's help on one line (all of it while the
# pointer is on the control or it has the focus), table headers that wrap between words only.
CSS = """
#app-title h1 { margin: 0 0 2px 0; font-size: 1.5rem; }
#app-title p { margin: 0; }
.intro p { margin: 0; }
.intro details { margin-top: 2px; }
.intro summary { cursor: pointer; color: var(--body-text-color-subdued); }
.cost { font-size: 0.85em; }
.cost p { margin: 0 0 2px 0; }
.option .info-text { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.option:hover .info-text, .option:focus-within .info-text { white-space: normal; overflow: visible; }
#models-table th, #runs-table th { word-break: normal; overflow-wrap: normal; hyphens: none; }
"""


def build_app(engine: Engine, delete_cache: tuple[int, int] | None = (3600, 86400)) -> gr.Blocks:
    """delete_cache: Gradio's (every, older than) in seconds for the uploads and result copies it keeps."""
    with gr.Blocks(title="Animate Studio", fill_width=True, delete_cache=delete_cache) as demo:
        gr.Markdown("# Animate Studio\nBring still images to life. Every model downloads once, on first use; each tab "
                    "has one-click examples.", elem_id="app-title")
        with gr.Sidebar(label="Settings", open=False):
            gr.Markdown(_settings_text(engine))
        with gr.Tabs() as tabs:
            for module in tab_modules(engine):
                importlib.import_module(module).build(engine)
            importlib.import_module("tabs.runs").build(engine, tabs)
            importlib.import_module("tabs.models").build(engine)
        # Closing or reloading the tab ends the session; its result could never be shown, so free the GPU.
        demo.unload(session_stopper(engine))
    return demo


def tab_modules(engine: Engine) -> list[str]:
    """The tab module of each of the engine's tasks that has one, in the tasks' order."""
    modules = [f"{__name__}.{task}" for task in engine.tasks]
    return [m for m in modules if importlib.util.find_spec(m) is not None]


def _settings_text(engine: Engine) -> str:
    c = engine.config
    cache = c.cache_dir or "default Hugging Face cache"
    return (f"**Device** {c.device} · **dtype** {c.dtype} · **offload** {c.offload}\n\n"
            f"**Outputs** `{c.outputs}`\n\n**Checkpoint cache** `{cache}`"
            f"{' (offline)' if engine.hub.offline else ''}\n\n"
            "Change these with the flags of `python app.py --help`.")
