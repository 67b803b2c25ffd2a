"""A tiny ONNX segmentation graph with the interface of the cut-out models the tasks run through rembg (tests only)."""
from __future__ import annotations

from pathlib import Path


def write_tiny_cutout(path: Path) -> None:
    """A tiny ONNX graph with the interface of ISNet / U2-Net (1x3xHxW -> 1x1xHxW):
    alpha = sigmoid(8 * (mean(rgb) - 0.2)).

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
