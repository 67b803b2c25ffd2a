"""One-click examples for every task: the project's own drawn inputs in assets/ (always there, offline too), plus the
models' published demo inputs once their checkpoint is in the cache (never a download of their own: offline or not yet
fetched, they are simply absent)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class Example:
    """An example run: input files (paths, lists of paths, or JSON text) and option values, by the task's names."""

    label: str
    inputs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def _asset(*parts: str) -> str:
    return str(ASSETS.joinpath(*parts))


def project_examples() -> dict[str, list[Example]]:
    """The examples drawn by assets/make_examples.py."""
    return {
        "pose": [Example("Drawn person, procedural DensePose dance",
                         {"image": _asset("pose", "person.png"), "motion": _asset("pose", "densepose_dance.mp4")},
                         {"fps": 25})],
        "densepose": [],
        "motion": [Example("Landscape: the sun sets, a cloud drifts, the lake ripples",
                           {"image": _asset("motion", "landscape.png"),
                            "trajectories": (ASSETS / "motion" / "landscape_trajectories.json").read_text()})],
        "dance": [Example("Drawn character, front and side views, built-in motion",
                          {"sheets": [_asset("dance", "character_front.png"), _asset("dance", "character_side.png")]},
                          {"format": "webm", "background": "transparent"})],
        "face": [Example("Drawn portrait, talking landmarks",
                         {"image": _asset("face", "portrait.png"),
                          "landmarks": _asset("face", "talking_landmarks.npy")}),
                 Example("Drawn portrait, synthetic speech",
                         {"image": _asset("face", "portrait.png"), "audio": _asset("face", "speech.wav")})],
        "fourd": [Example("A turning cube", {"video": _asset("fourd", "turning_cube.mp4")}),
                  Example("A cube, one picture -> 21-view orbit (SV3D_p)", {"image": _asset("fourd", "cube.png")},
                          {"model": "sv3d_p"})],
    }


@dataclass(frozen=True)
class Published:
    """Published demo inputs inside a checkpoint (configs/models.yaml): each input a path relative to its folder, or
    a glob for an input that takes several files."""

    task: str
    checkpoint: str
    label: str
    inputs: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)


_MAGICANIMATE = "inputs/applications"  # the Space's example folder (see magicanimate_examples in configs/models.yaml)
PUBLISHED = (
    Published("dance", "conr", "CoNR's own example: the ponytail character (from the nev/CoNR Space)",
              {"sheets": "character_sheet_ponytail_example/*.png"}),
    Published("pose", "magicanimate_examples", "MagicAnimate's own example: Mona Lisa, running",
              {"image": f"{_MAGICANIMATE}/source_image/monalisa.png",
               "motion": f"{_MAGICANIMATE}/driving/densepose/running.mp4"}),
    Published("pose", "magicanimate_examples", "MagicAnimate's own example: demo4",
              {"image": f"{_MAGICANIMATE}/source_image/demo4.png",
               "motion": f"{_MAGICANIMATE}/driving/densepose/demo4.mp4"}),
    Published("pose", "magicanimate_examples", "MagicAnimate's own example: dalle2, running",
              {"image": f"{_MAGICANIMATE}/source_image/dalle2.jpeg",
               "motion": f"{_MAGICANIMATE}/driving/densepose/running2.mp4"}),
)


def published_checkpoints(task: str) -> list[str]:
    """The checkpoints that hold the task's published examples, in PUBLISHED's order."""
    return list(dict.fromkeys(p.checkpoint for p in PUBLISHED if p.task == task))


def published_inputs(task: str) -> set[str]:
    """The task's input names any of its published examples fills."""
    return {name for p in PUBLISHED if p.task == task for name in p.inputs}


def _found(folder: Path, pattern: str) -> Any:
    """The files a pattern names in the folder: a sorted list for a glob, one path (or None) for a plain path."""
    if any(c in pattern for c in "*?["):
        return sorted(str(p) for p in folder.glob(pattern))
    path = folder / pattern
    return str(path) if path.is_file() else None


def published_examples(task: str, cached_folder: Any) -> list[Example]:
    """The task's published examples whose checkpoint is cached; cached_folder(name) -> folder or None."""
    found = []
    for published in PUBLISHED:
        folder = cached_folder(published.checkpoint) if published.task == task else None
        if folder is None:
            continue
        inputs = {name: _found(Path(folder), pattern) for name, pattern in published.inputs.items()}
        if all(inputs.values()):
            found.append(Example(published.label, inputs, dict(published.options)))
    return found


def examples(task: str, cached_folder: Any) -> list[Example]:
    """Every example of a task: the project's, then the published ones that are cached."""
    return project_examples().get(task, []) + published_examples(task, cached_folder)
