"""Models tab: every checkpoint each task needs, whether it is cached, and a download button per task."""
from __future__ import annotations

import gradio as gr

from engine import Engine, human_size, user_message
from engine.errors import AnimateError
from tabs import watermark_check

COLUMNS = ["task", "checkpoint", "repo", "size", "gated", "cached", "path", "files"]


def table(engine: Engine) -> list[list[object]]:
    return [[("yes" if r[c] else "no") if isinstance(r[c], bool) else r[c] for c in COLUMNS]
            for r in engine.checkpoint_rows()]


def totals(engine: Engine) -> str:
    """Download size per task, e.g. 'dance: 1.2 GB (all cached)'."""
    parts = []
    for name in engine.tasks:
        rows = [r for r in engine.checkpoint_rows() if r["task"] == name]
        missing = sum(r["size_mb"] for r in rows if not r["cached"]) * 2**20
        state = "all cached" if not missing else f"{human_size(missing)} still to download"
        parts.append(f"**{name}**: {human_size(sum(r['size_mb'] for r in rows) * 2**20)} ({state})")
    return " · ".join(parts)


def gated_note(engine: Engine) -> str:
    gated = {r["repo"]: r["url"] for r in engine.checkpoint_rows() if r["gated"]}
    if not gated:
        return "No checkpoint of the available tasks is gated."
    links = ", ".join(f"[{repo}]({url})" for repo, url in gated.items())
    return (f"**Gated checkpoints**: {links}. Open each page while logged in to Hugging Face, accept the licence, "
            "then create a read token (huggingface.co/settings/tokens) and start the app with `HF_TOKEN` set "
            "(on a Space: add it as a secret).")


def build(engine: Engine) -> None:
    with gr.Tab("Models", id="models"):
        gr.Markdown("Checkpoints download from the Hugging Face Hub on first use. Fetch a task's models ahead of "
                    "time here or with `python -m engine download TASK`.")
        grid = gr.Dataframe(value=table(engine), headers=COLUMNS, interactive=False, wrap=True, label="Checkpoints",
                            elem_id="models-table", max_height=420,
                            column_widths=["7%", "11%", "16%", "7%", "6%", "7%", "26%", "20%"])
        sizes = gr.Markdown(totals(engine))
        gr.Markdown(gated_note(engine))
        with gr.Row():
            chosen = gr.Dropdown(choices=list(engine.tasks), value=next(iter(engine.tasks), None), label="Task")
            download = gr.Button("Download checkpoints", variant="primary")
            refresh = gr.Button("Refresh")
        status = gr.Markdown()
        watermark_check.build(engine)

        def do_download(task: str, progress: gr.Progress = gr.Progress()) -> tuple[list[list[object]], str, str]:
            try:
                paths = engine.download(task, lambda f, m: progress(f, desc=m))
            except AnimateError as exc:
                raise gr.Error(user_message(exc), duration=None) from exc
            done = "Downloaded: " + ", ".join(f"`{k}` -> `{v}`" for k, v in paths.items())
            return table(engine), totals(engine), done

        download.click(do_download, chosen, [grid, sizes, status], api_name="download_checkpoints")
        refresh.click(lambda: table(engine), None, grid, api_name="list_checkpoints")
