"""Runs the probe pipeline and records which network objects it got."""
from __future__ import annotations

from pathlib import Path

from engine.jobs import JobContext
from engine.tasks import Options

SEEN: list[dict] = []


def validate(inputs: dict, options: Options) -> dict:
    return {}


def execute(ctx: JobContext) -> dict[str, Path]:
    SEEN.append(ctx.pipeline()(ctx.inputs, ctx.options))
    out = ctx.path("networks.txt")
    out.write_text(", ".join(SEEN[-1]))
    return {"networks": out}
