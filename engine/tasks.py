"""Tasks by convention: each package `engine/pipelines/<task>/` is one task, found by discovery.

A task package holds modules with fixed roles (`ROLES`):
- `spec.py`: `SPEC = TaskSpec(...)`, the task's inputs and options (light: no torch at import, so the CLI and the app
  start fast). The option list is the one place where user-facing defaults and ranges live.
- `job.py`: `validate(inputs, options) -> prepared` (reads and checks the files, no model loads) and
  `execute(ctx) -> {name: path}`; optionally `PREVIEWS`, the quick helpers a tab calls through `Engine.preview`.
- `pipeline.py`: `PIPELINE`, a `engine.pipelines.base.Pipeline` subclass.
- `bench.py`: `bench(harness, size, **settings)` and its `SETTINGS` defaults (see engine/bench.py).
- `tiny.py`: `write_tiny_checkpoints(folders, seed)`, tiny random checkpoints in the published layout (tests only;
  no production module imports it).
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

from engine.errors import InputError

TASKS_PACKAGE = "engine.pipelines"
ROLES = ("spec", "job", "pipeline", "bench", "tiny")
MAX_SEED = 2**32 - 1  # numpy's seed range; torch takes it too
# Task modules import diffusers/transformers on first use, often from two Gradio worker threads at once (a run and a
# preview); their lazy top-level modules are not thread-safe on first import ("cannot import name ... from
# 'diffusers'", seen once in the browser tests), so the first import of a role happens under one lock, and so do
# the imports a loader makes inside a function (two jobs on two devices load the same networks at once).
IMPORT_LOCK = threading.RLock()


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

    @classmethod
    def seed(cls, default: int,
             help: str = "random seed (-1: a new random seed, recorded in settings.json)") -> "Option":
        return cls("seed", "int", default, help, minimum=-1, maximum=MAX_SEED)

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
                value = value if isinstance(value, bool) else _truth(value)
            else:
                value = str(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"Option {self.name} must be {self.kind}, got {value!r}.") from None
        if self.choices and value not in self.choices:
            raise InputError(f"Option {self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}.")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"Option {self.name} must be at least {self.minimum}; got {value}.")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"Option {self.name} must be at most {self.maximum}; got {value}.")
        return value


def _truth(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


class Options(Mapping[str, Any]):
    """A task's options after parsing: every option present, typed and in range. Read as `opts.size` or
    `opts["size"]`; the job and the pipeline share this one object (nothing parses options twice)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            raise AttributeError(f"no option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Options are read-only; use replace()")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Options({self._values!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return Options, (self._values,)

    def replace(self, **changes: Any) -> "Options":
        return Options({**self._values, **changes})


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
    """What a task takes and needs. `name` is its package's name; `order` places its tab."""

    name: str
    title: str
    description: str
    checkpoints: tuple[str, ...]
    inputs: tuple[Input, ...]
    options: tuple[Option, ...]
    order: int = 100
    optional_checkpoints: tuple[str, ...] = field(default=())
    # The optional checkpoints a run needs, chosen from its parsed options (say, the model a user picked); None: none.
    option_checkpoints: Callable[[Options], tuple[str, ...]] | None = None
    package: str = ""  # where the role modules live; default engine.pipelines.<name> (tests point elsewhere)
    # Its denoising steps are sums over windows, so one job may be divided among devices (engine.distributed).
    splits_windows: bool = False

    @property
    def all_checkpoints(self) -> tuple[str, ...]:
        return self.checkpoints + self.optional_checkpoints

    def run_checkpoints(self, options: Options | None = None) -> tuple[str, ...]:
        """The checkpoints a pipeline for these options loads: the required ones, then those the options choose."""
        if self.option_checkpoints is None:
            return self.checkpoints
        chosen = self.option_checkpoints(options if options is not None else self.parse_options())
        unknown = [name for name in chosen if name not in self.optional_checkpoints]
        if unknown:
            raise ValueError(f"task {self.name} chose checkpoints {unknown} that are not in its optional_checkpoints")
        return self.checkpoints + tuple(name for name in chosen if name not in self.checkpoints)

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def parse_options(self, given: Mapping[str, Any] | None = None) -> Options:
        """Every option's value: given ones coerced and checked, the rest from defaults. Unknown names are errors."""
        given = dict(given or {})
        unknown = set(given) - {o.name for o in self.options}
        if unknown:
            raise InputError(f"Unknown option(s) for {self.name}: {', '.join(sorted(unknown))}. "
                             f"Known: {', '.join(o.name for o in self.options)}.")
        return Options({o.name: o.coerce(given.get(o.name)) for o in self.options})

    # ----- the package's roles, imported on first use -------------------------------------------------
    def module(self, role: str) -> ModuleType:
        if role not in ROLES:
            raise ValueError(f"unknown task role {role!r}; roles are {ROLES}")
        with IMPORT_LOCK:
            return importlib.import_module(f"{self.package or TASKS_PACKAGE + '.' + self.name}.{role}")

    @property
    def job(self) -> ModuleType:
        return self.module("job")

    @property
    def pipeline_class(self) -> Any:
        return self.module("pipeline").PIPELINE

    def previews(self) -> Mapping[str, Any]:
        return getattr(self.job, "PREVIEWS", {})


def discover_tasks(package: str = TASKS_PACKAGE) -> dict[str, TaskSpec]:
    """Every task package under `package` (each with a spec.py), in tab order."""
    root = importlib.import_module(package)
    specs = []
    for info in pkgutil.iter_modules(root.__path__):
        if not info.ispkg:
            continue
        spec = importlib.import_module(f"{package}.{info.name}.spec").SPEC
        if spec.name != info.name:
            raise ValueError(f"{package}.{info.name}.spec names its task {spec.name!r}; it must be {info.name!r}")
        specs.append(spec)
    return {spec.name: spec for spec in sorted(specs, key=lambda s: (s.order, s.name))}
