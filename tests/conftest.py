"""Shared fixtures: a tiny Hub cache in the published layout (built once per session) and an offline engine on it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from engine import Engine, EngineConfig  # noqa: E402
from engine.testing import build_tiny_hub  # noqa: E402


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hub(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def engine(tiny_hub: Path, tmp_path: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", outputs=tmp_path / "outputs", cache_dir=tiny_hub, offline=True))


@pytest.fixture(scope="session")
def session_engine(tiny_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """One engine for tests that only read (its model cache is shared, so pipelines build once)."""
    outputs = tmp_path_factory.mktemp("outputs")
    return Engine(EngineConfig(device="cpu", outputs=outputs, cache_dir=tiny_hub, offline=True))
