"""A generator exported to ONNX by other code, wrapped so that it speaks the model folder's
contract: z float32 (N, latent) [+ labels int64 (N,)] in, images uint8 (N, H, W, C) out.

What the foreign graph takes and gives is detected from the graph and one run (the user may
state any of it): the latent input (the float input, (N, z) or (N, z, 1, 1)), an optional
class-label input (an integer input of shape (N,)), the output's layout (NCHW or NHWC: the
axis of 1 or 3 channels) and range (a final Tanh: [-1, 1], a final Sigmoid: [0, 1]; otherwise
[-1, 1] if any value of a run of seeds is negative, else [0, 1]). ganserve's own pre- and
post-processing is then added around the graph, in the graph's own opset: the latent
reshaped if needed, and the pixels mapped exactly as `serving/formats/pixels.py` maps them
([0, 1] output is first mapped to [-1, 1]).

    >>> found = inspect(onnx.load("netG.onnx"))
    >>> wrapped = wrap(onnx.load("netG.onnx"), found)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from serving.formats.pixels import PIXEL_SCALE, to_levels

from .verify import ExportError

PREFIX = "imported/"  # the foreign graph's names, so they cannot clash with ganserve's
MIN_OPSET = 11  # Round and Clip with tensor bounds
FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
INTEGERS = {TensorProto.INT64, TensorProto.INT32}
RANGE_OF_LAST_OP = {"Tanh": "tanh", "Sigmoid": "unit"}  # a graph that ends in one says its range


@dataclass(frozen=True)
class Found:
    latent_input: str
    latent_dim: int
    latent_rank: int  # 2: (N, z); 4: (N, z, 1, 1)
    latent_type: int  # ONNX element type
    label_input: str | None
    label_type: int | None
    output: str
    layout: str | None = None  # nchw | nhwc, once known
    range: str | None = None  # tanh ([-1, 1]) | unit ([0, 1]), once known

    def describe(self) -> str:
        shape = "(N, z)" if self.latent_rank == 2 else "(N, z, 1, 1)"
        labels = f", class labels {self.label_input!r}" if self.label_input else ", no class labels"
        spans = "[-1, 1]" if self.range == "tanh" else "[0, 1]"
        return (f"latent {self.latent_input!r} {shape} with z = {self.latent_dim}{labels}; output {self.output!r}, "
                f"{self.layout.upper()}, values in {spans}")


def inspect(model: onnx.ModelProto, latent_input: str | None = None, label_input: str | None = None) -> Found:
    """The graph's inputs and output, as far as the graph itself says (layout and range need a run)."""
    opset = opset_of(model)
    if opset < MIN_OPSET:
        raise ExportError(f"the graph uses ONNX opset {opset}; ganserve needs {MIN_OPSET} or newer: export it again "
                          "with opset_version=17")
    graph = model.graph
    initialisers = {init.name for init in graph.initializer}
    inputs = {value.name: value for value in graph.input if value.name not in initialisers}
    latent = _pick(inputs, latent_input, lambda v: _type(v) in FLOATS and _rank(v) in (2, 4), "--latent-input",
                   "a float input of shape (N, z) or (N, z, 1, 1)")
    others = {name: value for name, value in inputs.items() if name != latent.name}
    label = None
    if others or label_input:
        label = _pick(others, label_input, lambda v: _type(v) in INTEGERS and _rank(v) == 1, "--label-input",
                      "an integer input of shape (N,)")
        extra = sorted(set(others) - {label.name})
        if extra:
            raise ExportError(f"the graph has inputs {extra} beyond the latent and the labels; ganserve feeds only "
                              "those two: export the generator with the others fixed")
    dims = latent.type.tensor_type.shape.dim
    if not dims[1].HasField("dim_value") or (_rank(latent) == 4 and any(d.dim_value != 1 for d in dims[2:])):
        raise ExportError(f"latent input {latent.name!r}: its shape must be (N, z) or (N, z, 1, 1) with z fixed")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 0:
        raise ExportError(f"latent input {latent.name!r} has a fixed batch size of {dims[0].dim_value}; export the "
                          "generator with a dynamic batch axis (dynamic_axes / dynamic_shapes in torch.onnx.export)")
    if len(graph.output) < 1:
        raise ExportError("the graph has no output")
    output = graph.output[0]
    if _rank(output) not in (None, 4):
        raise ExportError(f"output {output.name!r} has rank {_rank(output)}; ganserve needs images (N, C, H, W) or "
                          "(N, H, W, C)")
    last = next((node.op_type for node in graph.node if output.name in node.output), None)
    return Found(latent.name, dims[1].dim_value, _rank(latent), _type(latent), label.name if label else None,
                 _type(label) if label else None, output.name, range=RANGE_OF_LAST_OP.get(last))


def settle(found: Found, raw_images: np.ndarray, layout: str | None, value_range: str | None) -> Found:
    """Layout and range from a run's raw output (N, ...) unless the user stated them."""
    if raw_images.ndim != 4:
        raise ExportError(f"output {found.output!r} gave shape {list(raw_images.shape)}; ganserve needs images "
                          "(N, C, H, W) or (N, H, W, C)")
    if layout is None:
        channels_first, channels_last = raw_images.shape[1] in (1, 3), raw_images.shape[3] in (1, 3)
        if not (channels_first or channels_last):
            raise ExportError(f"output {found.output!r} of shape {list(raw_images.shape)} has no axis of 1 or 3 "
                              "channels; ganserve serves grey or RGB images")
        layout = "nchw" if channels_first else "nhwc"
    if value_range is None:
        value_range = found.range or ("tanh" if float(np.nanmin(raw_images)) < -1e-6 else "unit")
    return replace(found, layout=layout, range=value_range)


def image_shape(found: Found, raw_images: np.ndarray) -> tuple[int, int, int]:
    """(height, width, channels) of the wrapped graph's images."""
    n, a, b, c = raw_images.shape
    return (b, c, a) if found.layout == "nchw" else (a, b, c)


def wrap(model: onnx.ModelProto, found: Found) -> onnx.ModelProto:
    """The foreign graph inside ganserve's pre- and post-processing (same opset, same IR)."""
    inner = compose.add_prefix(model, PREFIX)
    constants = []

    def constant(name: str, value) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value), f"ganserve/{name}"))
        return f"ganserve/{name}"

    pre, latent = [], "z"
    if found.latent_rank == 4:  # (N, z) -> (N, z, 1, 1)
        pre.append(helper.make_node("Reshape", [latent, constant("latent_shape", np.array([0, -1, 1, 1], np.int64))],
                                    ["ganserve/z_4d"]))
        latent = "ganserve/z_4d"
    pre.append(helper.make_node("Cast", [latent], [PREFIX + found.latent_input], to=found.latent_type))
    if found.label_input:
        pre.append(helper.make_node("Cast", ["labels"], [PREFIX + found.label_input], to=found.label_type))

    x = "ganserve/raw"
    post = [helper.make_node("Cast", [PREFIX + found.output], [x], to=TensorProto.FLOAT)]
    if found.range == "unit":  # [0, 1] -> [-1, 1], then the one mapping every graph uses
        post += [helper.make_node("Mul", [x, constant("two", np.float32(2))], ["ganserve/doubled"]),
                 helper.make_node("Sub", ["ganserve/doubled", constant("one_", np.float32(1))], ["ganserve/signed"])]
        x = "ganserve/signed"
    levels_name = "ganserve/levels" if found.layout == "nchw" else "images"
    post += [helper.make_node("Add", [x, constant("one", np.float32(1))], ["ganserve/shifted"]),
             helper.make_node("Mul", ["ganserve/shifted", constant("scale", np.float32(PIXEL_SCALE))],
                              ["ganserve/scaled"]),
             helper.make_node("Round", ["ganserve/scaled"], ["ganserve/rounded"]),
             helper.make_node("Clip", ["ganserve/rounded", constant("low", np.float32(0)),
                                       constant("high", np.float32(255))], ["ganserve/clipped"]),
             helper.make_node("Cast", ["ganserve/clipped"], [levels_name], to=TensorProto.UINT8)]
    if found.layout == "nchw":  # (N, C, H, W) -> (N, H, W, C)
        post.append(helper.make_node("Transpose", [levels_name], ["images"], perm=[0, 2, 3, 1]))

    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", found.latent_dim])]
    if found.label_input:
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
    outputs = [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", None, None, None])]
    graph = helper.make_graph([*pre, *inner.graph.node, *post], "ganserve_imported_generator", inputs, outputs,
                              initializer=[*inner.graph.initializer, *constants],
                              value_info=list(inner.graph.value_info))
    wrapped = helper.make_model(graph, opset_imports=list(inner.opset_import), ir_version=inner.ir_version,
                                producer_name="ganserve import")
    wrapped.functions.extend(inner.functions)
    onnx.checker.check_model(wrapped, full_check=True)
    return wrapped


def levels(raw_images: np.ndarray, found: Found) -> np.ndarray:
    """What the wrapped graph should give for a raw output (the parity reference), in NumPy:
    uint8 (N, H, W, C)."""
    x = raw_images.astype(np.float32)
    if found.range == "unit":
        x = x * np.float32(2) - np.float32(1)
    pixels = to_levels(x).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1) if found.layout == "nchw" else pixels


def _pick(candidates: dict, named: str | None, fits, flag: str, wanted: str):
    if named is not None:
        if named not in candidates:
            raise ExportError(f"{flag}: the graph has no input {named!r} (its inputs: {sorted(candidates) or 'none'})")
        if not fits(candidates[named]):
            raise ExportError(f"{flag}: input {named!r} is not {wanted}")
        return candidates[named]
    matching = [value for value in candidates.values() if fits(value)]
    if len(matching) != 1:
        found = "none" if not matching else ", ".join(repr(v.name) for v in matching)
        raise ExportError(f"cannot tell which input is {wanted} ({found} fit); name it with {flag}")
    return matching[0]


def _type(value) -> int:
    return value.type.tensor_type.elem_type


def _rank(value) -> int | None:
    tensor = value.type.tensor_type
    return len(tensor.shape.dim) if tensor.HasField("shape") else None


def opset_of(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
