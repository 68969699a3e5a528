"""The service's OpenAPI 3 document, made from the request fields (`serving/requests.py`), so
the documented limits are the enforced ones; and the page that shows it (`/docs`)."""

from __future__ import annotations

from .. import __version__
from ..requests import INTERPOLATE_FIELDS, Field, generate_fields, project_fields, score_fields
from .admin import LOAD_FIELDS

TITLE = "ganserve"
DESCRIPTION = (
    "Generate images from a GAN and score images with its calibrated discriminator.\n\n"
    "Image i of a request depends only on (model, seeds[i], labels[i], truncation): the same seed gives the "
    "same bytes alone or in a batch, over HTTP or from `ganserve sample`. Mistakes are answered with a 4xx "
    "whose `error` names the field, the value received and what is allowed.")

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_NAME = {"name": "name", "in": "path", "required": True, "description": "a model of the repository (GET /models)",
         "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "description": "the version the request is pinned to: served while it is live, 409 otherwise",
            "schema": {"type": "string"}}


def _schema(field: Field, maximum: float | None = None) -> dict:
    if field.kind == "file":
        one = {"type": "string", "format": "binary"}
    elif field.kind == "latent":
        one = {"type": "array", "items": {"type": "number"}, "minItems": 1}
    else:
        one = {"type": field.kind}
        if field.minimum is not None:
            one["minimum"] = field.minimum
        high = field.maximum if maximum is None else maximum
        if high is not None:
            one["maximum"] = high
        if field.choices:
            one["enum"] = list(field.choices)
    if field.array:
        schema = {"type": "array", "items": one, "minItems": 1}
        if field.max_items is not None:
            schema["maxItems"] = field.max_items
    else:
        schema = one
        if field.default is not None:
            schema["default"] = field.default
        if field.example is not None:
            schema["example"] = field.example
    return {**schema, "description": field.description}


def object_schema(fields: dict[str, Field]) -> dict:
    return {"type": "object", "additionalProperties": False,
            "properties": {name: _schema(field) for name, field in fields.items()},
            "required": [name for name, field in fields.items() if field.required]}


def _errors(*statuses: int) -> dict:
    reasons = {400: "a field is missing, unknown or out of range (the message says which)",
               401: "an API key (or on /admin routes, an admin key) is needed",
               404: "no such model or version in the repository (or the admin routes are off)",
               409: "the pinned version is not the live one, or the version asked for was refused",
               413: "the request body is larger than GANSERVE_MAX_BODY_BYTES",
               415: "the body is not of the content type this route takes",
               503: "the model is still loading, or the queue is full; retry after Retry-After seconds"}
    return {str(s): {"description": reasons[s], "content": {"application/json": {"schema": _ERROR}}}
            for s in statuses}


def document(max_images: int, max_score_images: int, without_discriminator: tuple[str, ...] = ()) -> dict:
    """`without_discriminator`: the served models imported as a generator only, named where
    a route needs D."""
    generate = generate_fields(max_images)
    no_d = (f" Served here without a discriminator (imported as a generator only), so /score, keep_top and "
            f"drs_accept answer 400: {', '.join(without_discriminator)}." if without_discriminator else "")
    binary = {"schema": {"type": "string", "format": "binary"}}
    json_images = {"type": "object", "properties": {
        "model": {"type": "object"}, "seeds": {"type": "array", "items": {"type": "integer"}},
        "labels": {"type": ["array", "null"], "items": {"type": "integer"}},
        "images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}}
    scores = {"type": "object", "properties": {"model": {"type": "object"}, "results": {"type": "array", "items": {
        "type": "object", "properties": {"image": {"type": "string"}, "logit": {"type": "number"},
                                         "p_real": {"type": "number", "minimum": 0, "maximum": 1}}}}}}
    projections = {"type": "object", "properties": {
        "model": {"type": "object"}, "search": {"type": "object"}, "results": {"type": "array", "items": {
            "type": "object", "properties": {
                "image": {"type": "string"}, "latent": {"type": "array", "items": {"type": "number"}},
                "mse_encoder": {"type": "number"}, "mse": {"type": "number"}, "psnr_encoder_db": {"type": "number"},
                "psnr_db": {"type": "number"}, "p_real": {"type": ["number", "null"]},
                "reconstruction": {"type": "string", "contentEncoding": "base64"}}}}}}
    model_headers = {"X-Model-Name": {"description": "the model that answered", "schema": {"type": "string"}},
                     "X-Model-Version": {"description": "its version", "schema": {"type": "string"}}}
    seeds_header = {"X-Seeds": {"description": "the seeds used, comma-separated", "schema": {"type": "string"}},
                    **model_headers}
    operations = {
        "/generate": {"post": {
            "summary": "Generate images",
            "description": "One PNG for n=1, a grid for n>1, or zip/json/npy by `format`. The seeds used come "
                           "back in X-Seeds (a random first seed when none is given)." + no_d,
            "requestBody": {"content": {"application/json": {
                "schema": object_schema(generate), "examples": {
                    "one": {"value": {"seed": 42}}, "grid": {"value": {"n": 16, "seed": 0}},
                    "zip": {"value": {"seeds": [1, 2, 3], "format": "zip"}},
                    "best of 4": {"value": {"seed": 7, "keep_top": 0.25}}}}}},
            "responses": {"200": {"description": "the images", "headers": seeds_header, "content": {
                "image/png": binary, "application/zip": binary, "application/octet-stream": binary,
                "application/json": {"schema": json_images}}}, **_errors(400, 413, 415, 503)}}},
        "/interpolate": {"post": {
            "summary": "Frames between two seeds",
            "description": "Spherical interpolation between two seeds' latents: a PNG strip (left to right) "
                           "or an animated GIF; the end frames are the seeds' own images.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": object_schema(INTERPOLATE_FIELDS),
                "example": {"seed_from": 3, "seed_to": 7, "frames": 8, "format": "gif"}}}},
            "responses": {"200": {"description": "the frames", "headers": model_headers,
                                  "content": {"image/png": binary, "image/gif": binary}},
                          **_errors(400, 413, 415, 503)}}},
        "/score": {"post": {
            "summary": "Score images with the calibrated discriminator",
            "description": "Per image, D's logit and p_real: how much it looks like this model's training "
                           "data rather than its generator's output. Not a general deepfake detector. A model "
                           "imported without a discriminator answers 400." + no_d,
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": object_schema(score_fields(max_score_images))}}},
            "responses": {"200": {"description": "one result per image", "headers": model_headers,
                                  "content": {"application/json": {"schema": scores}}},
                          **_errors(400, 413, 415, 503)}}},
        "/project": {"post": {
            "summary": "Project images into the latent space: the latent G draws each from",
            "description": "The encoder's guess, refined by `rounds` batched runs of G of `candidates` latents each "
                           "(pixel distance; never worse than the guess). Per image: the latent (give it to "
                           "/generate as `latents`, or to /interpolate as `latent_from`/`latent_to`), the distance "
                           "before and after refinement (mean squared error of pixels in [0, 1], and PSNR), D's "
                           "p_real of the reconstruction and the reconstruction as a base64 PNG; or the latents as "
                           ".npy, or the reconstructions as PNG, by `format`. A model exported without an encoder "
                           "answers 400 ('ganserve train-encoder' makes one).",
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": object_schema(project_fields(max_score_images))}}},
            "responses": {"200": {"description": "one result per image", "headers": model_headers, "content": {
                "application/json": {"schema": projections}, "application/octet-stream": binary,
                "image/png": binary}}, **_errors(400, 413, 415, 503)}}},
        "/model": {"post": {
            "summary": "The model card",
            "description": "Name, version, image shape, classes, the provider in use, parity and calibration.",
            "responses": {"200": {"description": "the card", "headers": model_headers, "content": {
                "application/json": {"schema": {"type": "object"}}}}, **_errors(400, 503)}}},
    }
    paths = dict(operations)
    for prefix, parameters, more in (("/models/{name}", [_NAME], (404,)),
                                     ("/models/{name}/versions/{version}", [_NAME, _VERSION], (404, 409))):
        for route, operation in operations.items():
            method, spec = next(iter(operation.items()))
            paths[prefix + route] = {method: {
                **spec, "summary": f"{spec['summary']}, by model" + (" and pinned version" if 409 in more else ""),
                "parameters": parameters, "responses": {**spec["responses"], **_errors(*more)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": __version__, "description": DESCRIPTION},
        "paths": {
            **paths,
            "/models": {"get": {
                "summary": "The repository: every model, its versions, which is live, and why any was refused",
                "responses": {"200": {"description": "the models", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, **_errors(503)}}},
            "/admin/models/{name}/load": {"post": {
                "summary": "Admin: load, verify, gate and switch to a version (off unless --admin-key-file)",
                "parameters": [_NAME],
                "requestBody": {"content": {"application/json": {"schema": object_schema(LOAD_FIELDS)}}},
                "responses": {"200": {"description": "the version is live in every worker"},
                              **_errors(400, 401, 404, 409, 413, 415, 503)}}},
            "/admin/models/{name}/rollback": {"post": {
                "summary": "Admin: back to the version live before this one (off unless --admin-key-file)",
                "parameters": [_NAME],
                "responses": {"200": {"description": "the earlier version is live in every worker"},
                              **_errors(400, 401, 404, 409, 413, 415, 503)}}},
            **_open_inference_protocol(),
            "/readyz": {"get": {"summary": "200 once every worker has the default model loaded and warm, 503 before",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not yet"}}}},
            "/livez": {"get": {"summary": "200 while the process is up", "responses": {"200": {"description": "up"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition format"}}}},
        },
    }


_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                            "INT64", "FP16", "FP32", "FP64"]},
    "data": {"type": "array"}, "parameters": {"type": "object"}}}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "NAME (the generator: SEED INT64 [N] -> IMAGE UINT8 [N, H, W, C]) or NAME.discriminator "
                         "(IMAGE -> LOGIT, P_REAL FP32 [N])"}


def _open_inference_protocol() -> dict:
    """The Open Inference Protocol's REST routes (serving/http/oip.py)."""
    infer = {"post": {
        "summary": "Open Inference Protocol: infer (JSON tensors, or the binary tensor data extension)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
            "example": {"inputs": [{"name": "SEED", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}}}},
        "responses": {"200": {"description": "the outputs", "content": {"application/json": {"schema": {
            "type": "object"}}, "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            **_errors(400, 404, 409, 413, 503)}}}
    metadata = {"get": {"summary": "Open Inference Protocol: model metadata (its tensors)",
                        "responses": {"200": {"description": "metadata"}, **_errors(400, 404, 409, 503)}}}
    ready = {"get": {"summary": "Open Inference Protocol: 200 when the model can be served, 400 when not",
                     "responses": {"200": {"description": "ready"}, **_errors(400, 404, 503)}}}
    paths = {"/v2": {"get": {"summary": "Open Inference Protocol: server metadata",
                             "responses": {"200": {"description": "name, version, extensions"}}}},
             "/v2/health/live": {"get": {"summary": "Open Inference Protocol: liveness",
                                         "responses": {"200": {"description": "live"}}}},
             "/v2/health/ready": {"get": {"summary": "Open Inference Protocol: readiness",
                                          "responses": {"200": {"description": "ready"},
                                                        "503": {"description": "not yet"}}}}}
    for prefix, parameters in (("/v2/models/{model}", [_MODEL]), ("/v2/models/{model}/versions/{version}",
                                                                  [_MODEL, _VERSION])):
        for suffix, operation in (("", metadata), ("/ready", ready), ("/infer", infer)):
            method, spec = next(iter(operation.items()))
            paths[prefix + suffix] = {method: {**spec, "parameters": parameters}}
    return paths


def docs_page() -> str:
    """Swagger UI on /docs.json, from the assets BentoML already serves under /static_content."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>{TITLE} {__version__} API</title>
<link rel="stylesheet" href="/static_content/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static_content/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/docs.json", dom_id: "#swagger-ui"}});</script>
</body></html>
"""
