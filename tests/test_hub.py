"""Checkpoint resolution against hand-built Hub caches: pinning, allow-patterns, and every CheckpointError message."""
from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from engine.errors import CheckpointError
from engine.hub import CheckpointSpec, Hub, load_specs
from engine.testing import commit_for, snapshot_folder

OLD, NEW = "1" * 40, "2" * 40


def make_repo(cache: Path, commits: dict[str, list[str]], main: str, repo_type: str = "model") -> None:
    base = cache / f"{repo_type}s--org--demo"
    for commit, files in commits.items():
        for name in files:
            path = base / "snapshots" / commit / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{commit}:{name}")
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(main)


def spec(**kw) -> CheckpointSpec:
    base = dict(name="demo", title="Demo model", repo="org/demo", files=("weights/a.bin",), size_mb=1)
    base.update(kw)
    return CheckpointSpec(**base)


def test_pinned_revision_resolves_that_commit_offline(tmp_path: Path) -> None:
    make_repo(tmp_path, {OLD: ["weights/a.bin"], NEW: ["weights/a.bin"]}, main=NEW)
    hub = Hub({"demo": spec(revision=OLD)}, cache_dir=tmp_path, offline=True)
    folder = hub.resolve("demo")
    assert folder.name == OLD and (folder / "weights/a.bin").read_text() == f"{OLD}:weights/a.bin"
    hub_main = Hub({"demo": spec(revision="main")}, cache_dir=tmp_path, offline=True)
    assert hub_main.resolve("demo").name == NEW


def test_patterns_and_files_decide_cached(tmp_path: Path) -> None:
    make_repo(tmp_path, {OLD: ["weights/a.bin", "tok/vocab.json"]}, main=OLD)
    ok = Hub({"demo": spec(revision=OLD, patterns=("tok/*.json",))}, cache_dir=tmp_path, offline=True)
    assert ok.status("demo").cached
    missing = Hub({"demo": spec(revision=OLD, files=("weights/a.bin", "weights/b.bin"), patterns=("other/*",))},
                  cache_dir=tmp_path, offline=True)
    status = missing.status("demo")
    assert not status.cached and status.missing == ["weights/b.bin", "other/*"]
    with pytest.raises(CheckpointError, match="not in the local cache and the app is offline"):
        missing.resolve("demo")


def test_offline_message_names_repo_and_download_command(tmp_path: Path) -> None:
    hub = Hub({"demo": spec()}, cache_dir=tmp_path, offline=True)
    with pytest.raises(CheckpointError) as err:
        hub.resolve("demo")
    assert "org/demo" in str(err.value) and "python -m engine download" in str(err.value)


def test_unreachable_hub_says_check_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = Hub({"demo": spec()}, cache_dir=tmp_path, offline=False)
    monkeypatch.setattr(hub, "_check_disk", lambda s: None)

    def unreachable(*a, local_only: bool, **k):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(hub, "_snapshot", unreachable)
    with pytest.raises(CheckpointError, match="Could not reach the Hugging Face Hub.*python -m engine download"):
        hub.resolve("demo")


def _http_error(kind: type, status: int) -> Exception:
    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/demo")
    return kind("denied", response=httpx2.Response(status, request=request))


@pytest.mark.parametrize("error, expected", [
    (lambda: _http_error(GatedRepoError, 401), r"gated\. Accept its licence at https://huggingface.co/org/demo.*HF_TOKEN"),
    (lambda: _http_error(RepositoryNotFoundError, 404), r"org/demo \(model\) was not found"),
])
def test_hub_failures_become_clear_checkpoint_errors(tmp_path, monkeypatch, error, expected) -> None:
    hub = Hub({"demo": spec(gated=True)}, cache_dir=tmp_path, token="hf_secret_value")
    monkeypatch.setattr(hub, "_check_disk", lambda s: None)

    def fail(*a, local_only: bool, **k):
        if local_only:
            raise FileNotFoundError("not cached")
        raise error()

    monkeypatch.setattr(hub, "_snapshot", fail)
    with pytest.raises(CheckpointError, match=expected) as err:
        hub.resolve("demo")
    assert "hf_secret_value" not in str(err.value)


def test_disk_space_is_checked_before_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = Hub({"demo": spec(size_mb=1e12)}, cache_dir=tmp_path)
    monkeypatch.setattr(hub, "_snapshot", lambda *a, local_only, **k: (_ for _ in ()).throw(FileNotFoundError()))
    with pytest.raises(CheckpointError, match="Not enough disk space"):
        hub.resolve("demo")


def test_dry_run_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="offline"):
        Hub({"demo": spec()}, cache_dir=tmp_path, offline=True).plan("demo")


def test_models_yaml_is_complete_and_pins_conr() -> None:
    specs = load_specs()
    conr = specs["conr"]
    assert conr.repo == "nev/CoNR" and conr.repo_type == "space"
    assert conr.revision == "8abc56d553e3f87636edafee957266ebf272ab41"
    assert {"weights/shader.pth", "weights/udpparsernet.pth"} <= set(conr.files)
    for s in specs.values():
        assert s.size_mb > 0 and s.allow_patterns, s.name
    assert specs["svd_xt_11"].gated


def test_tiny_cache_uses_official_layout(tiny_hub: Path) -> None:
    conr = load_specs()["conr"]
    folder = tiny_hub / "spaces--nev--CoNR" / "snapshots" / conr.revision
    assert (folder / "weights" / "shader.pth").is_file()
    assert (tiny_hub / "spaces--nev--CoNR" / "refs" / "main").read_text() == conr.revision
    assert snapshot_folder(tiny_hub, conr) == folder and commit_for(conr) == conr.revision
