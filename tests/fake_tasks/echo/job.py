"""The echo test task's job: upper-cases a text file; options make it cancel itself or crash."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.jobs import JobContext
from engine.tasks import Options

EVENTS: list[str] = []


def validate(inputs: dict, options: Options) -> dict:
    EVENTS.append("validate")
    if not Path(inputs["text"]).is_file():
        raise InputError("text file missing")
    return {"text": Path(inputs["text"]).read_text()}


def execute(ctx: JobContext) -> dict[str, Path]:
    EVENTS.append("execute")
    out = ctx.path("result.txt")
    out.write_text(ctx.inputs["text"].upper() + f" {np.random.rand():.6f}")
    ctx.record("characters", np.int64(len(ctx.inputs["text"])))
    for step in range(3):
        ctx.progress(step / 3, f"step {step}")
        if ctx.options.mode == "cancel" and step == 1:
            ctx.cancel.cancel()
        ctx.cancel.check()
        if ctx.options.mode == "crash" and step == 2:
            raise RuntimeError("boom")
    return {"result": out}
