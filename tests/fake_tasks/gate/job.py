"""Loads its pipeline, says it holds the slot, then waits until the test opens its gate (or crashes, if asked). Its
preview reports the device slot it was given."""
from __future__ import annotations

import threading
from pathlib import Path

from engine.jobs import JobContext, PreviewContext
from engine.tasks import Options

GATES: dict[str, threading.Event] = {}  # job name -> opened by the test to let that job finish
INSIDE: dict[str, threading.Event] = {}  # job name -> set once that job holds a device slot
NETWORKS: dict[str, object] = {}  # job name -> the network its pipeline got


def validate(inputs: dict, options: Options) -> dict:
    return {}


def execute(ctx: JobContext) -> dict[str, Path]:
    name = ctx.options.name
    NETWORKS[name] = ctx.pipeline()(ctx.inputs, ctx.options)
    INSIDE[name].set()
    while not GATES[name].wait(0.05):
        ctx.cancel.check()
    if ctx.options.crash:
        raise RuntimeError(f"{name} crashed")
    out = ctx.path("name.txt")
    out.write_text(name)
    return {"name": out}


def slot_preview(ctx: PreviewContext) -> tuple[str, object]:
    with ctx.exclusive():
        return str(ctx.device), ctx.networks


PREVIEWS = {"slot": slot_preview}
