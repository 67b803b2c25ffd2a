"""The published examples' button in a real browser: an app online on a cache without MagicAnimate's demo inputs
offers them, fetches them on the click (the download replaced by files placed in the Space's layout), lists them, and
one click loads one into the tab."""
from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import expect

from engine import Engine, EngineConfig
from tabs import CSS, THEME, build_app
from tests.test_examples import place_magicanimate_examples


def test_get_the_published_examples_then_load_one(browser, tiny_hub: Path, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    shutil.copytree(tiny_hub, hub)
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path / "out", cache_dir=hub, offline=False))
    engine.checkpoint = lambda name, progress=None, task=None: place_magicanimate_examples(hub)
    demo = build_app(engine)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, theme=THEME, css=CSS)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(demo.local_url)
        page.locator("#pose-get-examples").click()
        example = page.locator("#pose-examples button.gallery-item", has_text="Mona Lisa")
        expect(example).to_be_visible()
        expect(page.locator("#pose-get-examples")).to_be_hidden()
        example.click()
        expect(page.locator("#pose-reference img")).to_be_visible()
        expect(page.locator("#pose-motion video")).to_be_visible()
    finally:
        context.close()
        demo.close()
