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


# Published demo inputs inside a checkpoint: (task, checkpoint, label, {input: glob}), globs relative to its folder.
PUBLISHED = (
    ("dance", "conr", "CoNR's own example: the ponytail character (from the nev/CoNR Space)",
     {"sheets": "character_sheet_ponytail_example/*.png"}),
)


def published_examples(task: str, cached_folder: Any) -> list[Example]:
    """The task's published examples whose checkpoint is cached; cached_folder(name) -> folder or None."""
    found = []
    for owner, checkpoint, label, patterns in PUBLISHED:
        folder = cached_folder(checkpoint) if owner == task else None
        if folder is None:
            continue
        inputs = {name: sorted(str(p) for p in Path(folder).glob(pattern)) for name, pattern in patterns.items()}
        if all(inputs.values()):
            found.append(Example(label, inputs))
    return found


def examples(task: str, cached_folder: Any) -> list[Example]:
    """Every example of a task: the project's, then the published ones that are cached."""
    return project_examples().get(task, []) + published_examples(task, cached_folder)
