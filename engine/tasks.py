"""Task specifications: one definition of each task's inputs and options, shared by the CLI, the tabs and the configs.

A task module (engine/pipelines/<task>/task.py) exposes `TASK = TaskSpec(...)`. It must stay light to import (no torch
at module level) so that `python -m engine list` and the app start fast; heavy code is named by "module:attr" strings.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import yaml

from engine.errors import InputError
from engine.hub import CONFIG_DIR

TASK_MODULES = (
    "engine.pipelines.dance.task",
    "engine.pipelines.motion.task",
    "engine.pipelines.pose.task",
)


@dataclass(frozen=True)
class Option:
    """A user-settable option. kind: int, float, str, bool or choice."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    advanced: bool = False
    label: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def coerce(self, value: Any) -> Any:
        """Convert a CLI/UI/API value to the option's type, checking range and choices."""
        if value is None or value == "":
            return self.default
        try:
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool":
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise InputError(f"Option {self.name} must be {self.kind}, got {value!r}.") from None
        if self.choices and value not in self.choices:
            raise InputError(f"Option {self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}.")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"Option {self.name} must be at least {self.minimum}; got {value}.")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"Option {self.name} must be at most {self.maximum}; got {value}.")
        return value


@dataclass(frozen=True)
class Input:
    """A file input. kind: image, video, audio, file (any), json."""

    name: str
    kind: str
    help: str
    required: bool = True
    multiple: bool = False
    cli_flag: str = ""

    @property
    def flag(self) -> str:
        return self.cli_flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    description: str
    checkpoints: tuple[str, ...]
    inputs: tuple[Input, ...]
    options: tuple[Option, ...]
    pipeline: str
    validate: str
    execute: str
    bench: str
    tiny_checkpoints: str
    optional_checkpoints: tuple[str, ...] = field(default=())

    @property
    def all_checkpoints(self) -> tuple[str, ...]:
        return self.checkpoints + self.optional_checkpoints

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every option's value: given ones coerced and checked, the rest from defaults. Unknown names are errors."""
        given = dict(given or {})
        unknown = set(given) - {o.name for o in self.options}
        if unknown:
            raise InputError(f"Unknown option(s) for {self.name}: {', '.join(sorted(unknown))}. "
                             f"Known: {', '.join(o.name for o in self.options)}.")
        return {o.name: o.coerce(given.get(o.name)) for o in self.options}


def load_attr(target: str) -> Any:
    """'package.module:attribute' -> the attribute (imports the module on demand)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _with_config_defaults(spec: TaskSpec) -> TaskSpec:
    """configs/<task>.yaml may override option defaults (read by CLI and tabs alike)."""
    path = CONFIG_DIR / f"{spec.name}.yaml"
    if not path.is_file():
        return spec
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", {})
    unknown = set(defaults) - {o.name for o in spec.options}
    if unknown:
        raise ValueError(f"{path} sets unknown options: {', '.join(sorted(unknown))}")
    options = tuple(replace(o, default=o.coerce(defaults[o.name])) if o.name in defaults else o for o in spec.options)
    return replace(spec, options=options)


def load_tasks() -> dict[str, TaskSpec]:
    specs = [_with_config_defaults(load_attr(f"{module}:TASK")) for module in TASK_MODULES]
    return {spec.name: spec for spec in specs}

