"""The command line: help, list, download --dry-run, exit codes with one-line reasons."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for command in ("list", "download", "bench", "dance"):
        assert command in done.stdout


def test_task_help_lists_inputs_and_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["dance", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in ("--sheet", "--poses", "--fps", "--format", "--background", "--out", "--device"):
        assert flag in out


def test_list_shows_cached_tiny_checkpoints(capsys, tiny_hub: Path) -> None:
    code, out, _ = cli(capsys, "list", "--cache-dir", str(tiny_hub), "--offline")
    assert code == 0
    assert "dance:" in out and "nev/CoNR @ 8abc56d553e3" in out and "cached" in out
    assert str(tiny_hub) in out


def test_list_on_empty_cache_says_not_cached(capsys, tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "list", "--cache-dir", str(tmp_path), "--offline")
    assert code == 0 and "not cached" in out


def test_download_dry_run_offline_is_a_one_line_checkpoint_error(capsys, tmp_path: Path) -> None:
    code, out, err = cli(capsys, "download", "dance", "--dry-run", "--cache-dir", str(tmp_path), "--offline")
    assert code == 3
    assert err.startswith("error: ") and err.count("\n") == 1 and "offline" in err


def test_download_without_network_explains(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from types import SimpleNamespace

    import huggingface_hub.constants

    # a port nothing listens on: a machine with internet does not fetch the real checkpoints; the Hub client's
    # retries (1+2+4+8+8 s of back-off) are not waited out
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("huggingface_hub.utils._http.time", SimpleNamespace(time=time.time, sleep=lambda s: None))
    code, _, err = cli(capsys, "download", "dance", "--cache-dir", str(tmp_path))
    assert code == 3 and "Could not reach the Hugging Face Hub" in err and "nev/CoNR" in err


def test_download_dry_run_of_cached_task_reports_nothing_to_fetch(capsys, tiny_hub: Path) -> None:
    code, out, _ = cli(capsys, "download", "dance", "--dry-run", "--cache-dir", str(tiny_hub), "--offline")
    assert code == 0 and "already cached" in out and "total to download: 0 KB" in out


def test_bad_input_exits_2_with_reason(capsys, tiny_hub: Path, tmp_path: Path) -> None:
    bad = tmp_path / "sheet.png"
    bad.write_text("not a png")
    code, _, err = cli(capsys, "dance", "--sheet", str(bad), "--out", str(tmp_path / "out"),
                       "--cache-dir", str(tiny_hub), "--offline", "--device", "cpu")
    assert code == 2 and "sheet.png" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bench_prints_json_timings(capsys) -> None:
    code, out, _ = cli(capsys, "bench", "dance", "--size", "tiny", "--device", "cpu", "--frames", "1",
                       "--sheets", "1")  # a task's bench setting as a flag, the same as --set sheets=1
    report = json.loads(out)
    assert code == 0 and report["size"] == "tiny" and report["settings"] == {"sheets": 1, "frames": 1}
    assert report["results"]["s_per_frame"] > 0


def test_bench_rejects_a_setting_the_task_lacks(capsys) -> None:
    code, out, err = cli(capsys, "bench", "dance", "--size", "tiny", "--device", "cpu", "--steps", "3")
    assert code == 2 and out == "" and "--steps" in err and "dance" in err


def test_unknown_flags_are_refused_outside_bench(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli(capsys, "list", "--sheets", "1")
    assert stop.value.code == 2 and "unrecognized arguments: --sheets 1" in capsys.readouterr().err


def test_download_examples_adds_the_published_demo_inputs(capsys, tiny_hub: Path) -> None:
    """The tiny cache holds pose's checkpoints but not MagicAnimate's demo inputs: only --examples asks for them."""
    code, out, _ = cli(capsys, "download", "pose", "--dry-run", "--cache-dir", str(tiny_hub), "--offline")
    assert code == 0 and "magicanimate_examples" not in out
    code, _, err = cli(capsys, "download", "pose", "--examples", "--dry-run", "--cache-dir", str(tiny_hub), "--offline")
    assert code == 3 and "zcxu-eric/magicanimate" in err and err.count("\n") == 1
