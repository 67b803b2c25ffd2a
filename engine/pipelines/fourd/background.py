"""Background removal and the object mask, as SV4D 2.0's input preparation does it.

The original (preprocess_video in scripts/demo/sv4d_helpers.py@0ad7de9a5cb5) runs `rembg.remove(frame.convert("RGBA"),
alpha_matting=True)` with rembg's default session on frames without transparency (U2-Net in the rembg releases of
its time; rembg 2.0.86 defaults to BRIA RMBG, so the model is named here), and takes the object mask as
alpha > 0 for frames with transparency, else mean(RGB) <= 250 (the background is assumed white). rembg would download
U2-Net from GitHub at run time; here the same ONNX file comes from the Hub through the engine's checkpoint cache
(checkpoint "rembg_u2net") and is handed to rembg's U2-Net session directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import InputError

MODEL_FILE = "u2net.onnx"
WHITE_THRESHOLD = 250  # white_thresh in preprocess_video, sv4d_helpers.py@0ad7de9a5cb5


def object_mask(frame: np.ndarray) -> np.ndarray:
    """HxW bool: where the object is. RGBA: alpha > 0; RGB: not white (mean over RGB <= 250), as the original."""
    if frame.shape[-1] == 4:
        return frame[..., 3] > 0
    return frame[..., :3].mean(axis=-1) <= WHITE_THRESHOLD


def check_object_left(frames: Sequence[np.ndarray], removed: bool) -> None:
    """InputError when no frame shows any object (the framing would have nothing to centre)."""
    if any(object_mask(frame).any() for frame in frames):
        return
    if removed:
        raise InputError("Background removal left no object in any frame. Upload a mask (white = object), turn "
                         "background removal off for a video already on a white background, or film the object "
                         "against a plainer background.")
    raise InputError("No object found: every frame is white (with background removal off, the background must be "
                     "white and the object not). Turn background removal on, or upload a mask.")


class BackgroundRemover:
    """rembg's U2-Net session on a local model file; frames in, RGBA frames out."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort
        from rembg.sessions.u2net import U2netSession

        class HubModelSession(U2netSession):
            @classmethod
            def download_models(cls, *args: object, **kwargs: object) -> str:
                return str(model_path)

        self.session = HubModelSession("u2net", ort.SessionOptions())

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """RGBA uint8. Frames with transparency are returned as they are (the original skips them)."""
        if frame.shape[-1] == 4:
            return frame
        from PIL import Image
        from rembg import remove

        cut = remove(Image.fromarray(np.ascontiguousarray(frame)).convert("RGBA"), session=self.session,
                     alpha_matting=True)
        return np.asarray(cut.convert("RGBA")).copy()
