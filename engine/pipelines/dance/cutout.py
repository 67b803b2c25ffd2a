"""Automatic cut-out of character sheets without transparency (rembg's ISNet session on the anime-seg ONNX model).

rembg would download its models from GitHub at run time; here the model file comes from the Hub through the engine
(checkpoint "anime_seg") and is handed to rembg's DIS session directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_FILE = "isnetis.onnx"
OPAQUE_MEAN = 0.95  # CoNR refuses sheets whose mean alpha is at least this: they have no transparent area


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


def write_tiny_model(path: Path) -> None:
    """A tiny ONNX graph with the model's interface (1x3xHxW -> 1x1xHxW): alpha = sigmoid(8 * (mean(rgb) - 0.2)).

    rembg subtracts the ImageNet mean before the graph, so bright pixels come out as foreground. Tests only.
    """
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["img", "axes"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["mean", "shift"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["mask"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("shift", TensorProto.FLOAT, [], [0.2]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [8.0]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_isnet", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
