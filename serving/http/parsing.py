"""Request bodies into request fields, refusing what cannot be read with a 4xx that says why.

JSON routes take one JSON object, whatever content type was declared (`curl -d` sends JSON as
a form type); a body that is not JSON under a form or multipart type is a 415. `/score` takes
multipart/form-data. Unknown fields are refused by name, so a typo is never silently ignored.
Bodies over the limit are refused before they are read whole (413).
"""

from __future__ import annotations

import io
import json

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
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
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: the form parser reads it from here
    return body


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


async def score_form(request: Request, fields: dict[str, Field], shape: tuple[int, int, int]) -> dict:
    """/score's multipart fields: {images (uint8 N,H,W,C), labels, names, source}."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"content-type {content_type.split(';')[0] or '(none)'}: /score takes "
                                   "multipart/form-data: PNG or JPEG files as 'images', or one .npy file as 'array' "
                                   "(curl -F images=@a.png)")
    limit = fields["images"].max_items or 1024
    try:
        form = await request.form(max_files=limit + 1, max_fields=limit + 16)
    except MultiPartException as error:
        raise ServingError(f"body: not readable multipart/form-data ({error})") from None
    _refuse_unknown(form.keys(), "/score", fields)
    files = {name: form.getlist(name) for name in ("images", "array")}
    for name, values in files.items():
        for value in values:
            if not isinstance(value, UploadFile):
                raise ServingError(f"{name}: expected an uploaded file, got a text field; send files with "
                                   f"curl -F {name}=@FILE")
    for name in ("labels", "resize"):
        if any(isinstance(value, UploadFile) for value in form.getlist(name)):
            raise ServingError(f"{name}: expected a text field, got a file")
    if bool(files["images"]) == bool(files["array"]):
        raise ServingError("images: send PNG/JPEG files as 'images' or one .npy file as 'array' (exactly one)")
    resize = _boolean(form.getlist("resize"), "resize")
    labels = _labels(form.getlist("labels"))
    if files["array"]:
        if len(files["array"]) > 1:
            raise ServingError(f"array: {len(files['array'])} files; send one .npy file")
        return {"images": _npy(await files["array"][0].read()), "labels": labels, "source": "array"}
    if len(files["images"]) > limit:
        raise ServingError(f"images: {len(files['images'])} files is more than the limit of {limit}")
    decoded = [decode_image(await upload.read(), f"images[{i}]", shape, resize)
               for i, upload in enumerate(files["images"])]
    return {"images": np.stack(decoded), "labels": labels, "source": "images"}


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
