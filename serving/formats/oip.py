"""Open Inference Protocol (KServe v2) REST bodies, with the binary tensor data extension: an
infer request into named arrays, and named arrays into a response. Pure NumPy; the routes
that use it are in serving/http/oip.py.

A request is one JSON object, or, with the binary extension, a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw tensors of every input whose
`parameters.binary_data_size` says so, in order. Tensors are row-major and little-endian. A
response carries each output as JSON `data` or, when the client asked for binary outputs,
after the JSON header the same way.

    >>> request = parse_request(body, headers.get("inference-header-content-length"))
    >>> request.inputs["SEED"].array
    array([1, 2, 3])
    >>> body, headers = encode_response("digits", "3", request, {"IMAGE": images})
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ServingError

HEADER_LENGTH = "inference-header-content-length"
DATATYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
             "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
             "FP32": np.float32, "FP64": np.float64}
NAMES = {np.dtype(numpy_type): name for name, numpy_type in DATATYPES.items()}
REQUEST_FIELDS = {"id", "parameters", "inputs", "outputs", "model_name", "model_version"}  # the last two: kserve's
MAX_TENSORS = 16


class ProtocolError(ServingError):
    """A body that is not an Open Inference Protocol request (400, in the protocol's error shape)."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray  # of the stated shape and datatype


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    parameters: dict  # the request's own parameters (not the binary extension's)
    outputs: dict[str, bool] | None  # the outputs asked for, name -> as binary; None: all
    binary_outputs: bool  # the default for outputs not named (parameters.binary_data_output)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    header, binary = _split(body, header_length)
    try:
        payload = json.loads(header) if header.strip() else None
    except (ValueError, RecursionError):
        raise ProtocolError("body: not a JSON object (an Open Inference Protocol infer request)") from None
    if not isinstance(payload, dict):
        raise ProtocolError("body: expected a JSON object with 'inputs'")
    unknown = sorted(set(payload) - REQUEST_FIELDS)
    if unknown:
        raise ProtocolError(f"{unknown[0]}: not a field of an infer request; its fields are id, parameters, inputs, "
                            "outputs")
    parameters = _object(payload.get("parameters"), "parameters")
    binary_outputs = parameters.pop("binary_data_output", False)
    if not isinstance(binary_outputs, bool):
        raise ProtocolError("parameters.binary_data_output: must be true or false")
    inputs, offset = {}, 0
    entries = payload.get("inputs")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_TENSORS:
        raise ProtocolError(f"inputs: give a list of 1 to {MAX_TENSORS} tensors")
    for index, entry in enumerate(entries):
        tensor, offset = _input(entry, f"inputs[{index}]", binary, offset)
        if tensor.name in inputs:
            raise ProtocolError(f"inputs[{index}].name: {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
    if offset != len(binary):
        raise ProtocolError(f"body: {len(binary) - offset} bytes after the tensors that no binary_data_size "
                            "accounts for")
    return InferRequest(_id(payload.get("id")), inputs, parameters, _outputs(payload.get("outputs")), binary_outputs)


def encode_response(model_name: str, model_version: str, request: InferRequest,
                    outputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or a JSON header and the binary tensors."""
    wanted = request.outputs if request.outputs is not None else {name: request.binary_outputs for name in outputs}
    entries, blobs = [], []
    for name, binary in wanted.items():
        array = np.ascontiguousarray(outputs[name])
        entry = {"name": name, "datatype": NAMES[array.dtype], "shape": list(array.shape)}
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    response = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def check_output_names(request: InferRequest, available: tuple[str, ...]) -> None:
    for name in request.outputs or {}:
        if name not in available:
            raise ProtocolError(f"outputs: {name!r} is not an output of this model; its outputs are "
                                f"{', '.join(available)}")


# --- parts ---------------------------------------------------------------------------------------

def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ProtocolError(f"Inference-Header-Content-Length: {header_length!r} is not allowed; give the length in "
                            f"bytes of the JSON header, at most the body's {len(body)}")
    length = int(header_length)
    return body[:length], body[length:]


def _input(entry, where: str, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(entry, dict):
        raise ProtocolError(f"{where}: expected an object with name, shape, datatype and data")
    unknown = sorted(set(entry) - {"name", "shape", "datatype", "data", "parameters"})
    if unknown:
        raise ProtocolError(f"{where}.{unknown[0]}: not a field of a tensor; its fields are name, shape, datatype, "
                            "data, parameters")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}.name: give the input's name")
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(f"{name}: datatype {json.dumps(datatype)[:40]} is not allowed; use one of "
                            f"{', '.join(DATATYPES)}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        raise ProtocolError(f"{name}: shape {json.dumps(shape)[:60]} is not allowed; give a list of up to 8 "
                            "non-negative integers")
    dtype = np.dtype(DATATYPES[datatype])
    count = math.prod(shape)
    parameters = _object(entry.get("parameters"), f"{where}.parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in entry:
            raise ProtocolError(f"{name}: give data or parameters.binary_data_size, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise ProtocolError(f"{name}: binary_data_size {json.dumps(size)[:20]} does not match shape {shape} of "
                                f"{datatype} ({count * dtype.itemsize} bytes)")
        if offset + size > len(binary):
            raise ProtocolError(f"{name}: the body ends {offset + size - len(binary)} bytes short of its binary data")
        array = np.frombuffer(binary, dtype.newbyteorder("<"), count, offset).astype(dtype).reshape(shape)
        return Tensor(name, datatype, array), offset + size
    if "data" not in entry:
        raise ProtocolError(f"{name}: no data; give data, or binary data with parameters.binary_data_size")
    return Tensor(name, datatype, _json_data(entry["data"], name, datatype, dtype, shape, count)), offset


def _json_data(data, name: str, datatype: str, dtype: np.dtype, shape: list[int], count: int) -> np.ndarray:
    values = _flat(data, name, count)
    if not all(isinstance(v, (int, float, bool)) for v in values):
        raise ProtocolError(f"{name}: data must be numbers of datatype {datatype}")
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            raise ProtocolError(f"{name}: data must be true or false for datatype BOOL")
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not all(isinstance(v, int) and not isinstance(v, bool) and info.min <= v <= info.max for v in values):
            raise ProtocolError(f"{name}: data must be integers from {info.min} to {info.max} for datatype {datatype}")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ProtocolError(f"{name}: data must be numbers for datatype {datatype}")
    if len(values) != count:
        raise ProtocolError(f"{name}: {len(values)} values do not fill shape {shape} ({count} values)")
    return np.asarray(values, dtype).reshape(shape)


def _flat(data, name: str, limit: int) -> list:
    """A flat list from data given flat or nested (row-major), without recursing deeper than a
    tensor's rank and without reading more values than the shape holds."""
    out, stack = [], [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list):
            if depth >= 8:
                raise ProtocolError(f"{name}: data is nested deeper than a tensor's rank")
            stack.extend((item, depth + 1) for item in reversed(value))
        else:
            out.append(value)
            if len(out) > limit:
                raise ProtocolError(f"{name}: more values than its shape holds ({limit})")
    return out


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object")
    return dict(value)


def _id(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError("id: must be a string")


def _outputs(value) -> dict[str, bool] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TENSORS:
        raise ProtocolError(f"outputs: give a list of up to {MAX_TENSORS} outputs, each {{\"name\": ...}}")
    wanted = {}
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError(f"outputs[{index}]: expected an object with a name")
        unknown = sorted(set(entry) - {"name", "parameters"})
        if unknown:
            raise ProtocolError(f"outputs[{index}].{unknown[0]}: not a field of a requested output; its fields are "
                                "name, parameters")
        binary = _object(entry.get("parameters"), f"outputs[{index}].parameters").get("binary_data", False)
        if not isinstance(binary, bool):
            raise ProtocolError(f"outputs[{index}].parameters.binary_data: must be true or false")
        wanted[entry["name"]] = binary
    return wanted
