"""Automatic cut-out of character sheets without transparency (rembg's ISNet session on the anime-seg ONNX model).

rembg would download its models from GitHub at run time; here the model file comes from the Hub through the engine
(checkpoint "anime_seg") and is handed to rembg's DIS session directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_FILE = "isnetis.onnx"
OPAQUE_MEAN = 0.95  # CoNR refuses sheets whose mean alpha is at least this: they have no transparent area
# (the assert in shader_forward, conr.py@660c4f771390)


def needs_cutout(image: np.ndarray) -> bool:
    """True for RGB images and RGBA images with (almost) no transparency."""
    return image.shape[-1] != 4 or float(image[..., 3].mean()) / 255.0 >= OPAQUE_MEAN


class AnimeCutout:
    """Foreground matte for anime illustrations."""

    def __init__(self, model_path: Path) -> None:
        from rembg.sessions.dis_anime import DisSession

        class HubModelSession(DisSession):
            @classmethod
            def download_models(cls, *args: object, **kwargs: object) -> str:
                return str(model_path)

        import onnxruntime as ort

        self.session = HubModelSession("isnet-anime", ort.SessionOptions())

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """HxW uint8 alpha for an HxWx3 uint8 image."""
        from PIL import Image

        return np.asarray(self.session.predict(Image.fromarray(np.ascontiguousarray(rgb[..., :3])))[0])

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGBA uint8 with the predicted alpha."""
        return np.dstack([image[..., :3], self.mask(image)])
