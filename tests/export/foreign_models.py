"""Generators exported to ONNX by code other than ganserve's, for `ganserve import` to take in.
Only onnx and NumPy: tests of the serving install use them too."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def hand_built_generator(path, batch="N", noise=False, labels=False):
    """An NHWC generator in [0, 1] written with onnx.helper: z (N, 4) -> sigmoid(z W) as 4x4 RGB."""
    weights = np.random.default_rng(3).standard_normal((4, 48)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["latent", "W"], ["h"])]
    inputs = [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [batch, 4])]
    if labels:
        nodes += [helper.make_node("Cast", ["class"], ["class_f"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["class_f", "axis"], ["class_col"]),
                  helper.make_node("Add", ["h", "class_col"], ["h_l"])]
        inputs.append(helper.make_tensor_value_info("class", TensorProto.INT64, [batch]))
    last = "h_l" if labels else "h"
    if noise:
        nodes += [helper.make_node("RandomNormalLike", [last], ["eps"]), helper.make_node("Add", [last, "eps"], ["hn"])]
        last = "hn"
    nodes += [helper.make_node("Sigmoid", [last], ["s"]), helper.make_node("Reshape", ["s", "shape"], ["image"])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                 [batch, 4, 4, 3])],
                              initializer=[numpy_helper.from_array(weights, "W"),
                                           numpy_helper.from_array(np.array([-1, 4, 4, 3], np.int64), "shape"),
                                           *([numpy_helper.from_array(np.array([1], np.int64), "axis")]
                                             if labels else [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weights
