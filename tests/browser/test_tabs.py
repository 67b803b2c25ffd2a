"""Each tab as a user meets it in Chromium at 1440x900 (tiny models, CPU): load the example, shrink the work, run, see
the result; a bad upload names the file; Stop reports the cancel as information."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

RUN_TIMEOUT_MS = 150_000  # a tiny run on a loaded 2-core CPU
SET_ATTEMPTS = 5
SETTLE_MS = 500
SAW_STOPPING = """() => {
    window.sawStopping = false;
    const check = () => { if ((document.querySelector('#pose-stop')?.textContent || '').includes('Stopping'))
                              window.sawStopping = true; };
    new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                        attributes: true});
}"""


def open_tab(page: Page, title: str, task: str) -> None:
    page.get_by_role("tab", name=title).click()
    expect(page.locator(f"#{task}-run")).to_be_visible()


def load_example(page: Page, task: str) -> None:
    page.locator(f"#{task}-examples button.gallery-item").first.click()


def expect_picture(page: Page, label: str) -> None:
    """The visible image input labelled `label` shows a picture (an example's file has arrived)."""
    block = page.locator(f".block:has([data-testid=block-label]:has-text('{label}')):visible").first
    expect(block.locator("img").first).to_be_visible()


def open_advanced(page: Page) -> None:
    """Open the visible tab's advanced settings and wait until they are open (their controls are rendered only
    then: a lookup right after the click can miss them)."""
    page.locator("button.label-wrap:visible", has_text="Advanced settings").click()
    expect(page.locator("button.label-wrap.open:visible", has_text="Advanced settings")).to_be_visible()


def set_number(page: Page, label: str, value: float) -> None:
    """A slider's number box (or a plain number field) of the visible tab; Enter commits it. Waits for the field
    (never decides from a count taken while the page is still changing) and types again if the value did not stay:
    a slider that has just appeared (an accordion opened) can put its first value back over what was typed."""
    slider_box = page.locator(f'input[aria-label="number input for {label}"]')
    number_field = page.get_by_label(label, exact=True).and_(page.locator("input[type=number]"))
    box = slider_box.or_(number_field).locator("visible=true").first
    for _ in range(SET_ATTEMPTS):
        box.fill(str(value))
        box.press("Enter")
        page.wait_for_timeout(SETTLE_MS)
        if box.input_value() == str(value):
            return
    raise AssertionError(f"{label} did not keep the value {value}: it shows {box.input_value()}")


def expect_result_video(page: Page, task: str) -> None:
    """The result video appears; an error toast ends the wait at once (and fails with its text)."""
    page.wait_for_selector(f"#{task}-result video[src], .toast-body.error", timeout=RUN_TIMEOUT_MS)
    assert not page.locator(".toast-body.error").count(), page.locator(".toast-body.error").all_inner_texts()
    expect(page.locator(f"#{task}-result video")).to_have_attribute("src", re.compile(r".+"))


def test_pose_example_runs_and_shows_the_result(page: Page) -> None:
    load_example(page, "pose")
    expect(page.locator("#pose-reference img")).to_be_visible()
    set_number(page, "Size", 64)
    set_number(page, "Steps", 1)
    page.locator("#pose-run").click()
    expect_result_video(page, "pose")


def test_motion_example_runs_and_shows_the_result(page: Page) -> None:
    """Size changed at once after the example is clicked, while its picture is still loading: the example's points
    stay (the two once raced, and the run then had no trajectory)."""
    open_tab(page, "Trajectories", "motion")
    open_advanced(page)
    set_number(page, "Frames", 4)
    set_number(page, "Steps", 1)
    load_example(page, "motion")
    set_number(page, "Size", 64)  # the example's points lie inside the square kept at any size
    expect(page.locator("#motion-canvas img")).to_be_visible()
    page.locator("#motion-run").click()
    expect_result_video(page, "motion")


def test_dance_example_runs_and_shows_the_result(page: Page) -> None:
    open_tab(page, "Character dance", "dance")
    load_example(page, "dance")
    expect(page.locator("#dance-sheets img").first).to_be_visible()
    open_advanced(page)
    set_number(page, "Frame end", 2)
    page.locator("#dance-run").click()
    expect_result_video(page, "dance")


def test_a_bad_upload_shows_a_message_naming_the_file(page: Page, tmp_path) -> None:
    """A text file renamed .png passes the browser's type filter and is refused by the app with its own message;
    a .txt is refused by the upload box itself, which names the file too."""
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    page.locator("#pose-reference input[type=file]").set_input_files(str(fake))
    message = page.locator(".toast-body.error", has_text="notes.png")
    expect(message).to_contain_text("is not a picture")
    text = tmp_path / "notes.txt"
    text.write_text("not a picture either")
    page.locator("#pose-reference input[type=file]").set_input_files(str(text))
    expect(page.locator(".toast-body.error", has_text="notes.txt")).to_be_visible()


def test_stop_shows_stopping_then_cancelled(page: Page) -> None:
    load_example(page, "pose")
    expect(page.locator("#pose-reference img")).to_be_visible()
    set_number(page, "Size", 64)
    set_number(page, "Steps", 100)
    page.locator("#pose-run").click()
    page.wait_for_timeout(3000)  # the job has started
    # With the tiny models the job ends a fraction of a second after Stop and the button turns back to "Stop":
    # watch the button's text from before the click instead of polling it afterwards.
    page.evaluate(SAW_STOPPING)
    page.locator("#pose-stop").click()
    page.wait_for_function("() => window.sawStopping === true", timeout=5_000)
    expect(page.locator(".toast-body.info", has_text="Cancelled")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert not page.locator(".toast-body.error").count()


def test_face_example_runs_and_shows_the_result(page: Page) -> None:
    open_tab(page, "Talking faces", "face")
    load_example(page, "face")
    expect_picture(page, "Portrait")
    expect(page.get_by_role("tab", name="Landmarks", exact=True)).to_have_attribute("aria-selected", "true")
    set_number(page, "Steps", 1)
    open_advanced(page)
    set_number(page, "Size", 64)
    page.locator("#face-run").click()
    expect_result_video(page, "face")


def test_fourd_example_runs_and_shows_the_result(page: Page) -> None:
    open_tab(page, "Video to 4D", "fourd")
    load_example(page, "fourd")
    set_number(page, "Steps", 1)
    open_advanced(page)
    set_number(page, "Size", 64)
    page.locator("#fourd-run").click()
    expect_result_video(page, "fourd")
    page.get_by_role("tab", name="Viewer", exact=True).click()  # the other results arrived under their tabs
    expect(page.locator(".block:has([data-testid=block-label]:has-text('Viewer')):visible img").first).to_be_visible()
