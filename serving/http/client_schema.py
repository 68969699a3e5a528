"""/schema.json as BentoML's own clients read it, so `bentoml.SyncHTTPClient(url)` and
`AsyncHTTPClient` can call ganserve's routes.

BentoML's clients learn a service's endpoints from the `routes` of /schema.json: a name, a
path, a JSON schema of the input and one of the output. BentoML fills it from `@bentoml.api`
methods only, and ganserve's routes are a mounted app (one request model, its own parsing: see
docs/DESIGN.md), so the list was empty and `client.generate` did not exist. This middleware
answers /schema.json with BentoML's own schema plus ganserve's routes, described from the same
fields the routes enforce; the client then posts to the very routes every other client uses.

    >>> client = bentoml.SyncHTTPClient("http://localhost:3000", token=KEY)
    >>> client.generate(seed=7)                      # a PNG file (a pathlib.Path)
    >>> client.score(images=[Path("a.png")])         # {"model": ..., "results": [...]}
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..requests import INTERPOLATE_FIELDS, generate_fields, project_fields, score_fields
from .openapi import object_schema

FILE = {"type": "file", "format": "binary"}


def routes(max_images: int, max_score_images: int) -> list[dict]:
    """ganserve's routes in the shape of BentoML's `routes` entries."""
    score, project = object_schema(score_fields(max_score_images)), object_schema(project_fields(max_score_images))
    for schema in (score, project):
        for name in ("images", "array"):  # BentoML's clients send "file" fields as multipart uploads
            field = schema["properties"][name]
            schema["properties"][name] = {**field, "items": FILE} if field.get("type") == "array" else \
                {**field, **FILE}
    return [
        _route("generate", "/generate", object_schema(generate_fields(max_images)), FILE,
               "Generate images: a PNG (one image, or a grid), or zip/json/npy by format; returns the file"),
        _route("interpolate", "/interpolate", object_schema(INTERPOLATE_FIELDS), FILE,
               "Frames between two seeds: a PNG strip or a GIF; returns the file"),
        _route("score", "/score", score, {"type": "object"},
               "Score image files with the calibrated discriminator: logit and p_real per image"),
        _route("project", "/project", project, {"type": "object"},
               "Project image files into the latent space: per image the latent, the distances and the "
               "reconstruction"),
        _route("model", "/model", {"type": "object", "properties": {}, "additionalProperties": False},
               {"type": "object"}, "The model card"),
    ]


def _route(name: str, route: str, input_schema: dict, output_schema: dict, doc: str) -> dict:
    return {"name": name, "route": route, "description": doc, "batchable": False, "input": input_schema,
            "output": output_schema, "is_task": False}


class ClientSchema:
    """Answers GET /schema.json with `schema()` plus ganserve's routes; passes the rest on."""

    def __init__(self, app, schema: Callable[[], dict], max_images: int, max_score_images: int):
        self.app, self.schema = app, schema
        self.routes = routes(max_images, max_score_images)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/schema.json" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        schema = self.schema()
        body = json.dumps({**schema, "routes": [*schema.get("routes", []), *self.routes]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
