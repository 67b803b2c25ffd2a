"""The app in a real browser: app.py started in a subprocess on a free port, offline, on the tiny-model Hub cache,
driven by Playwright through Debian's chromium. A failing test leaves a screenshot in the folder printed at the end
(ANIMATE_SCREENSHOTS, default <tmp>/animate-browser-screenshots).

Chromium or Playwright missing is a failure (CI installs both); ANIMATE_SKIP_BROWSER=1 skips these tests on a
machine without them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ANIMATE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("ANIMATE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "animate-browser-screenshots")
START_TIMEOUT_S = 180
VIEWPORT = {"width": 1440, "height": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def pytest_terminal_summary(terminalreporter) -> None:
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.is_dir() else []
    if shots:
        terminalreporter.write_line(f"browser screenshots of failed tests: {SCREENSHOTS}")


def _playwright():
    """sync_playwright, or a clear failure (a skip only when ANIMATE_SKIP_BROWSER=1)."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright is not installed (pip install -r requirements-test.txt -c constraints.txt)"
    if why is None and not Path(CHROMIUM).exists():
        why = f"Chromium is not at {CHROMIUM} (apt-get install -y chromium, or set ANIMATE_CHROMIUM)"
    if why is None:
        return sync_playwright
    if os.environ.get("ANIMATE_SKIP_BROWSER") == "1":
        pytest.skip(why)
    pytest.fail(why + "; set ANIMATE_SKIP_BROWSER=1 to skip the browser tests on this machine")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(tiny_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app, as a user starts it, on the tiny Hub cache (offline, CPU)."""
    _playwright()
    folder = tmp_path_factory.mktemp("browser_app")
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SPACES_ZERO_GPU", None)
    log = (folder / "app.log").open("w")
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--cache-dir", str(tiny_hub),
                               "--offline", "--device", "cpu", "--outputs", str(folder / "outputs")],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"app.py did not start: {(folder / 'app.log').read_text()[-3000:]}")
            time.sleep(1)
    yield url
    server.send_signal(signal.SIGTERM)  # the app's own shutdown (cancels jobs, removes its temp folder)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="session")
def browser(app_url: str):
    with _playwright()() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url: str, request: pytest.FixtureRequest):
    """A fresh browser tab on the app (a new Gradio session) at 1440x900; screenshot kept if the test fails."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(app_url)
    tab.wait_for_selector("#app-title")
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"{request.node.name}.png"
        tab.screenshot(path=str(shot), full_page=True)
        request.node.add_report_section("call", "screenshot", str(shot))
    context.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots() -> None:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
