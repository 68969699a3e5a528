"""Count the floating-point operations of one image through an ONNX graph (batch 1).

Counts multiply-adds as 2 FLOPs in Gemm/MatMul/Conv/ConvTranspose, the layers that carry
the work; element-wise operations are left out (they are memory-bound and small)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference


def flops_per_image(path: Path) -> int:
    model = _folded_at_batch_one(path)
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Gemm", "MatMul"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if not a or not b:
                continue
            m = int(np.prod(a[:-1])) if not attrs.get("transA") else a[-1]
            k = a[-1] if not attrs.get("transA") else a[0]
            n = b[-1] if not attrs.get("transB") else b[0]
            total += 2 * m * k * n
        elif node.op_type == "Conv":
            weight, out = shapes.get(node.input[1]), shapes.get(node.output[0])
            if weight and out:
                total += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":
            weight, x = shapes.get(node.input[1]), shapes.get(node.input[0])
            if weight and x:  # weight (C_in, C_out/group, kh, kw): every input pixel scatters C_out*kh*kw
                total += 2 * int(np.prod(x)) * int(np.prod(weight[1:]))
    return total


def _folded_at_batch_one(path: Path) -> onnx.ModelProto:
    """The graph with its batch fixed to 1 and constants folded by ONNX Runtime's basic
    optimisations (standard ONNX operators only), so every shape is static: the exported
    graphs compute reshape targets from the input's shape."""
    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = 1  # batch of one
    with tempfile.TemporaryDirectory() as folder:
        fixed, folded = Path(folder) / "fixed.onnx", Path(folder) / "folded.onnx"
        onnx.save(model, str(fixed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(folded))
