"""Loads its own pipeline (checkpoints chosen by the `model` option) and, when asked, another task's."""
from __future__ import annotations

from pathlib import Path

from engine.jobs import JobContext
from engine.tasks import Options

SEEN: list[dict] = []


def validate(inputs: dict, options: Options) -> dict:
    return {}


def execute(ctx: JobContext) -> dict[str, Path]:
    seen = {"own": ctx.pipeline()(ctx.inputs, ctx.options)}
    if ctx.options.borrow:
        seen["borrowed"] = ctx.pipeline(ctx.options.borrow)
    SEEN.append(seen)
    out = ctx.path("checkpoints.txt")
    out.write_text(", ".join(seen["own"]))
    return {"checkpoints": out}
