"""Request bodies into request fields, refusing what cannot be read with a 4xx that says why.

JSON routes take one JSON object, whatever content type was declared (`curl -d` sends JSON as
a form type); a body that is not JSON under a form or multipart type is a 415. `/score` takes
multipart/form-data. Unknown fields are refused by name, so a typo is never silently ignored.
Bodies over the limit are refused before they are read whole (413).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ..errors import ServingError
from ..formats.images import decode_image
from ..requests import Field, parse_labels


class BodyTooLarge(ServingError):
    status_code = 413


class UnsupportedMediaType(ServingError):
    status_code = 415


class ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(f"request body: {declared} bytes is too large; the limit is {limit} bytes "
                           "(GANSERVE_MAX_BODY_BYTES)")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body: more than {limit} bytes is too large (GANSERVE_MAX_BODY_BYTES)")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


def json_fields(body: bytes, content_type: str, route: str, fields: dict[str, Field]) -> dict:
    """The fields of a JSON object body (an empty body: no fields)."""
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ServingError("body: the JSON is nested too deeply; send one flat object of fields") from None
    except ValueError as error:  # also bad UTF-8, and integers past Python's digit limit
        if content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
            raise UnsupportedMediaType(f"content-type {content_type.split(';')[0]}: {route} takes a JSON object; "
                                       "send it with content-type: application/json") from None
        raise ServingError(f"body: not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ServingError(f"body: expected a JSON object of fields, got {type(payload).__name__}")
    _refuse_unknown(payload.keys(), route, fields)
    return {name: value for name, value in payload.items() if value is not None}  # null: as if left out


def _refuse_unknown(names, route: str, fields: dict[str, Field]) -> None:
    unknown = sorted(set(names) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ServingError(f"{unknown[0]}: not a field of {route}; its fields are {allowed}")


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None  # None: a text field
    data: bytes


def multipart_parts(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """The parts of a multipart/form-data body, read whole (bodies are bounded). Parsed with
    python-multipart straight into bytes: Starlette's form layer (a spooled temporary file
    per part) took twice as long for the one small image a score request usually carries."""
    _, options = parse_options_header(content_type.encode("latin-1"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise ServingError("content-type: multipart/form-data without a boundary; let the client library set the "
                           "header (curl -F images=@a.png)")
    parts: list[Part] = []
    headers: list[list[bytes]] = []
    data: list[bytes] = []

    def on_part_begin():
        headers.clear()
        data.clear()

    def on_header_field(buffer, start, end):
        headers.append([bytes(buffer[start:end]), b""])

    def on_header_value(buffer, start, end):
        headers[-1][1] += bytes(buffer[start:end])

    def on_part_data(buffer, start, end):
        data.append(bytes(buffer[start:end]))

    def on_part_end():
        if len(parts) >= max_parts:
            raise ServingError(f"body: more than {max_parts} parts; send at most {max_parts} files and fields")
        disposition = next((value for field, value in headers if field.lower() == b"content-disposition"), None)
        if disposition is None:
            raise ServingError("body: a multipart part has no Content-Disposition header; name each part")
        _, params = parse_options_header(disposition)
        if b"name" not in params:
            raise ServingError("body: a multipart part has no name; name each part (name=\"images\")")
        filename = params.get(b"filename")
        parts.append(Part(params[b"name"].decode("latin-1"), None if filename is None else filename.decode("latin-1"),
                          b"".join(data)))

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_part_data": on_part_data,
                                        "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise ServingError(f"body: not readable multipart/form-data ({error})") from None
    return parts


def images_form(body: bytes, content_type: str, fields: dict[str, Field], shape: tuple[int, int, int],
                route: str = "/score") -> dict:
    """A multipart body of images (/score, /project): {images (uint8 N,H,W,C), labels, source,
    and the route's other text fields by name (as text; the request builder checks them)}."""
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"content-type {content_type.split(';')[0] or '(none)'}: {route} takes "
                                   "multipart/form-data: PNG or JPEG files as 'images', or one .npy file as 'array' "
                                   "(curl -F images=@a.png)")
    limit = fields["images"].max_items or 1024
    parts = multipart_parts(body, content_type, limit + 16)
    _refuse_unknown([part.name for part in parts], route, fields)
    by_name: dict[str, list[Part]] = {}
    for part in parts:
        by_name.setdefault(part.name, []).append(part)
    files = {name: by_name.get(name, []) for name in ("images", "array")}
    for name, values in files.items():
        if any(part.filename is None for part in values):
            raise ServingError(f"{name}: expected an uploaded file, got a text field; send files with "
                               f"curl -F {name}=@FILE")
    texts = {name: by_name.get(name, []) for name, field in fields.items() if field.kind != "file"}
    for name, values in texts.items():
        if any(part.filename is not None for part in values):
            raise ServingError(f"{name}: expected a text field, got a file")
    if bool(files["images"]) == bool(files["array"]):
        raise ServingError("images: send PNG/JPEG files as 'images' or one .npy file as 'array' (exactly one)")
    resize = _boolean([_text(part) for part in texts.pop("resize")], "resize")
    labels = _labels([_text(part) for part in texts.pop("labels")])
    others = {name: _one_value(fields[name], [_text(part) for part in values], name)
              for name, values in texts.items() if values}
    if files["array"]:
        if len(files["array"]) > 1:
            raise ServingError(f"array: {len(files['array'])} files; send one .npy file")
        return {"images": _npy(files["array"][0].data), "labels": labels, "source": "array", **others}
    if len(files["images"]) > limit:
        raise ServingError(f"images: {len(files['images'])} files is more than the limit of {limit}")
    decoded = [decode_image(part.data, f"images[{i}]", shape, resize) for i, part in enumerate(files["images"])]
    return {"images": np.stack(decoded), "labels": labels, "source": "images", **others}


def _one_value(field: Field, values: list[str], name: str):
    """A form field's text as its field's type where it reads as one (the builder checks the range
    and refuses the rest, naming the field)."""
    if len(values) > 1:
        raise ServingError(f"{name}: given {len(values)} times; give it once")
    text = values[0].strip()
    if field.kind == "integer" and text.lstrip("-").isdigit():
        return int(text)
    return text


def _text(part: Part) -> str:
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ServingError(f"{part.name}: not UTF-8 text") from None


def _npy(data: bytes) -> np.ndarray:
    try:
        batch = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle what a client sends
    except (ValueError, OSError, EOFError) as error:
        raise ServingError(f"array: not a readable .npy file ({error})") from None
    if not isinstance(batch, np.ndarray):
        raise ServingError("array: not a .npy file (an .npz archive?); send one array saved with numpy.save")
    return batch[None] if batch.ndim == 3 else batch


def _boolean(values: list[str], name: str) -> bool:
    if len(values) > 1:
        raise ServingError(f"{name}: given {len(values)} times; give it once")
    if not values:
        return False
    text = values[0].strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ServingError(f"{name}: {json.dumps(values[0])[:40]} is not allowed; use true or false")
    return text in ("true", "1")


def _labels(values: list[str]) -> list[int] | None:
    """Labels as repeated fields (labels=3, labels=1), in the command line's grammar (labels=3,1
    or 0-9), or as a JSON list (labels=[3,1]); checked against the model by the request builder."""
    if not values:
        return None
    return [label for text in values for label in parse_labels(text.strip().strip("[]"), "labels")]
