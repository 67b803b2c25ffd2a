"""What `pip install -r requirements.txt` installs is bounded and tested: every requirement has an upper bound, is
pinned in constraints.txt within its bounds, and the installed packages satisfy the requirements."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def requirements(name: str) -> list[Requirement]:
    """The requirements of a file, following `-r other.txt` lines."""
    found: list[Requirement] = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += requirements(line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line).groups()
            pins[canonicalize_name(name)] = Version(version)
    return pins


ALL = requirements("requirements-test.txt")


def test_test_requirements_include_the_runtime_ones() -> None:
    runtime = {canonicalize_name(r.name) for r in requirements("requirements.txt")}
    assert runtime and runtime <= {canonicalize_name(r.name) for r in ALL}


@pytest.mark.parametrize("requirement", ALL, ids=str)
def test_every_requirement_has_an_upper_bound_and_a_pin_within_it(requirement: Requirement) -> None:
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), \
        f"{requirement}: add an upper bound on the next major version"
    pinned = constraints().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"{requirement.name} is not pinned in constraints.txt"
    assert requirement.specifier.contains(pinned, prereleases=True), \
        f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"


def test_constraints_pin_each_package_once_and_hold_the_extras_dependencies() -> None:
    names = [line.split("==")[0] for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert len({canonicalize_name(n) for n in names}) == len(names)
    assert {"onnxruntime", "gradio-client"} <= set(constraints())  # rembg[cpu]'s and gradio's own, pinned too


@pytest.mark.parametrize("requirement", ALL, ids=str)
def test_installed_packages_satisfy_the_requirements(requirement: Requirement) -> None:
    installed = Version(metadata.version(requirement.name))
    assert requirement.specifier.contains(Version(installed.base_version), prereleases=True), \
        f"{requirement.name} {installed} is installed, outside {requirement.specifier}"
