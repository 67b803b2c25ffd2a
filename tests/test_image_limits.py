"""One pixel limit for every image input, checked from the header before anything is decoded; the dance backdrop
fitted once per run; sheets that are empty or tiny refused by file name before any model loads."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine import Engine, media
from engine.errors import InputError
from engine.limits import Limits, applied
from engine.pipelines.dance.sheets import prepare_sheets
from engine.pipelines.dance.tiny import TINY_POSE_SIZE, synthetic_sheet

BOMB = (20000, 20000)
SMALL = 64  # side of the valid pictures (the tiny pose and motion models work at 64x64)
TRACKS = [[[10, 12], [30, 20], [44, 40]], [[50, 50], [46, 30]]]
OPTIONS = {
    "pose": {"size": SMALL, "steps": 1, "context": 4, "overlap": 1, "seed": 3},
    "motion": {"frames": 4, "steps": 2, "size": SMALL, "fps": 10, "seed": 3},
    "dance": {"working_size": 128, "frame_end": 3},
}


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20000x20000 PNG of a few hundred KB (bilevel, so making it holds 50 MB, not 400 MB)."""
    path = tmp_path_factory.mktemp("bomb") / "huge.png"
    Image.new("1", BOMB).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("image_limits")
    rng = np.random.default_rng(0)
    paths = {"picture": folder / "picture.png", "motion": folder / "motion.mp4", "a": folder / "a.png",
             "b": folder / "b.png", "empty": folder / "empty.png"}
    media.write_png(paths["picture"], rng.integers(0, 255, (SMALL, SMALL, 3), dtype=np.uint8))
    media.write_mp4(paths["motion"], [np.full((SMALL, SMALL, 3), 90, np.uint8)] * 2, fps=25)
    media.write_png(paths["a"], synthetic_sheet(0))
    media.write_png(paths["b"], synthetic_sheet(1))
    media.write_png(paths["empty"], np.zeros((40, 40, 4), np.uint8))
    return paths


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch):
    """Make decoding a picture of one of the given sizes fail the test (the refusal must come from the header)."""
    def guard(*sizes: tuple[int, int]) -> None:
        for cls in (Image.Image, ImageFile.ImageFile):
            original = cls.load

            def load(self: Image.Image, _original: Any = original) -> Any:
                assert self.size not in sizes, f"a {self.size} picture was decoded"
                return _original(self)

            monkeypatch.setattr(cls, "load", load)
    return guard


def _inputs(task: str, where: str, image: Path, files: dict[str, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Valid inputs for `task` with `image` in the slot `where`."""
    options = dict(OPTIONS[task])
    if task == "pose":
        inputs: dict[str, Any] = {"image": files["picture"], "motion": files["motion"]}
    elif task == "motion":
        inputs = {"image": files["picture"], "trajectories": TRACKS}
    else:
        inputs = {"sheets": [files["a"], files["b"]]}
        if where == "background_image":
            options["background"] = "image"
    if where == "masks":
        image = [image, image]
    elif where == "sheets":
        image = [files["a"], image]
    inputs[where] = image
    return inputs, options


def _refused_before_loading(engine: Engine, task: str, inputs: dict[str, Any], options: dict[str, Any],
                            match: str) -> InputError:
    with pytest.raises(InputError, match=match) as caught:
        engine.run(task, inputs, options)
    assert engine.models.keys() == []  # failed in validation: no network was built
    assert not [p for p in Path(engine.config.outputs).rglob("*") if p.is_file()]  # nothing written
    return caught.value


@pytest.mark.parametrize("task, where, what", [
    ("pose", "image", "Reference image"), ("dance", "sheets", "Character sheet"), ("dance", "masks", "Mask"),
    ("dance", "background_image", "Background image"), ("motion", "image", "Picture"),
    ("motion", "brush", "Motion brush"),
])
def test_a_huge_picture_is_too_large_in_every_slot(engine: Engine, bomb: Path, files: dict[str, Path], no_decoding,
                                                   task: str, where: str, what: str) -> None:
    no_decoding(BOMB)
    inputs, options = _inputs(task, where, bomb, files)
    error = _refused_before_loading(engine, task, inputs, options, f"{what} 'huge.png' is too large")
    assert "--max-image-megapixels" in str(error) and "80 megapixels" in str(error)


def test_the_limit_is_the_engines_setting(engine: Engine, files: dict[str, Path], no_decoding, tmp_path: Path) -> None:
    picture = media.write_png(tmp_path / "photo.png", np.zeros((40, 50, 3), np.uint8))
    assert media.read_image(picture).shape == (40, 50, 3)  # the default limit lets it through
    strict = Engine(dataclasses.replace(engine.config, limits=Limits(max_image_pixels=1999)))
    no_decoding((50, 40))
    inputs, options = _inputs("pose", "image", picture, files)
    error = _refused_before_loading(strict, "pose", inputs, options, r"'photo.png' is too large \(50 x 40, ")
    assert "0.001999 megapixels" in str(error)
    with applied(Limits(max_image_pixels=2000)), pytest.raises(AssertionError, match="decoded"):
        media.read_image(picture)  # exactly at the limit: accepted, so decoding starts (and the guard trips)


def test_an_operator_limit_above_pillows_own_is_honoured(tmp_path: Path) -> None:
    picture = tmp_path / "wide.png"
    Image.new("1", (30, 20)).save(picture)
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100  # stands for Pillow's 89 MP bomb check, far below the operator's limit
        with applied(Limits(max_image_pixels=1000)):
            assert media.read_image(picture).shape == (20, 30, 3)
    finally:
        Image.MAX_IMAGE_PIXELS = previous


# ---------------------------------------------------------------------------------------------------- backdrop

def test_backdrop_is_fitted_once_per_frame_size() -> None:
    image = np.zeros((30, 60, 3), np.uint8)
    image[:, 15:45] = 200  # the centre crop keeps only this
    backdrop = media.Backdrop(image)
    first = backdrop.at(10, 10)
    assert first.shape == (10, 10, 3) and first.min() == 200
    assert backdrop.at(10, 10) is first
    assert backdrop.at(20, 10).shape == (20, 10, 3)  # another size is fitted anew
    premultiplied = np.zeros((10, 10, 4), np.float32)
    assert np.array_equal(media.composite(premultiplied, backdrop), media.composite(premultiplied, image))
    assert media.Backdrop((1, 2, 3)).at(5, 5) == (1, 2, 3)


def test_dance_fits_the_background_picture_once(engine: Engine, files: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    background = media.write_png(tmp_path / "sky.png", np.full((90, 150, 3), (30, 60, 200), np.uint8))
    fitted = []
    original = media.fit

    def counting_fit(array: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        if array.shape[:2] == (90, 150):
            fitted.append(args)
        return original(array, *args, **kwargs)

    monkeypatch.setattr(media, "fit", counting_fit)
    inputs, options = _inputs("dance", "background_image", background, files)
    result = engine.run("dance", inputs, options)
    frames = media.read_video(result.files["video"])[0]
    assert len(frames) == 3 and frames[0].shape[:2] == TINY_POSE_SIZE
    assert len(fitted) == 1  # three frames and their previews, one fit
    assert abs(int(frames[0][0, 0, 2]) - 200) < 20  # the corner shows the (lossy-encoded) blue sky


# ---------------------------------------------------------------------------------------------------- sheets

def test_an_empty_second_sheet_is_named_by_its_file(engine: Engine, files: dict[str, Path]) -> None:
    inputs = {"sheets": [files["a"], files["empty"]]}
    error = _refused_before_loading(engine, "dance", inputs, OPTIONS["dance"],
                                    "'empty.png' is almost fully transparent")
    assert "sheet 1" not in str(error) and "sheet 2" not in str(error)


@pytest.mark.parametrize("pixels", [np.zeros((1, 1, 4), np.uint8) + 128, np.full((1, 1, 3), 200, np.uint8),
                                    np.full((8, 300, 4), 128, np.uint8)], ids=["rgba", "rgb_to_cut_out", "thin"])
def test_a_tiny_sheet_is_refused_before_loading(engine: Engine, files: dict[str, Path], tmp_path: Path,
                                                pixels: np.ndarray) -> None:
    tiny = media.write_png(tmp_path / "dot.png", pixels)
    h, w = pixels.shape[:2]
    _refused_before_loading(engine, "dance", {"sheets": [files["a"], tiny]}, OPTIONS["dance"],
                            f"Character sheet 'dot.png' is only {w}x{h} pixels, too small")


def test_prepare_sheets_names_sheets_and_refuses_tiny_ones() -> None:
    sheet = synthetic_sheet(0)
    with pytest.raises(InputError, match="'b.png' is almost fully transparent"):
        prepare_sheets([sheet, np.zeros_like(sheet)], 64, names=["a.png", "b.png"])
    with pytest.raises(InputError, match="Character sheet 2 is only 1x1 pixels"):
        prepare_sheets([sheet, sheet[:1, :1]], 64)

