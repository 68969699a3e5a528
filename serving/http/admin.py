"""Operators' routes: put a version of a model into service, or roll back to the one before.

    POST /admin/models/{name}/load      {"version": "4"}: load, verify, gate and switch to version 4, and
                                        keep it (newer versions are not taken up) until a load without a
                                        version returns the model to following the newest
    POST /admin/models/{name}/rollback  back to the version live before this one, kept likewise

Off unless the server was started with an admin key file (--admin-key-file,
GANSERVE_ADMIN_KEYS_FILE): then every request needs `Authorization: Bearer ADMINKEY` with a
key from that file, which no API key may share. Off, the routes answer 404 and say how to
turn them on. The answer comes once every worker has carried the command out (or after a
minute), with what each worker serves: 200 when the version is live, 409 with the reason when
it was refused (the live version keeps serving), 404 for an unknown model or version.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import ServingError
from ..requests import Field
from .auth import holds_key
from .parsing import json_fields, read_body

ADMIN_BODY_BYTES = 4096
LOAD_FIELDS = {"version": Field("version", "string", "the version to serve (default: the newest on disk, and follow "
                                "the newest again)", "give a version folder's name, e.g. \"4\"")}


class AdminOff(ServingError):
    status_code = 404


class AdminKeyNeeded(ServingError):
    status_code = 401


def routes(serving, answering) -> list[Route]:
    async def load(request: Request):
        _authorise(request)
        fields = json_fields(await read_body(request, ADMIN_BODY_BYTES), request.headers.get("content-type", ""),
                             request.url.path, LOAD_FIELDS)
        return await _command(request, "load", _version(fields.get("version")))

    async def rollback(request: Request):
        _authorise(request)
        json_fields(await read_body(request, ADMIN_BODY_BYTES), request.headers.get("content-type", ""),
                    request.url.path, {})
        return await _command(request, "rollback", None)

    async def _command(request: Request, action: str, version: str | None):
        rollout = serving.rollout
        serving.ready_registry()  # 503 while loading
        answer = await rollout.command(request.path_params["name"], action, version)
        return JSONResponse(answer, status_code=200 if answer["outcome"] == "live" else 409)

    def _authorise(request: Request) -> None:
        if serving.admin_keys is None:
            raise AdminOff("admin operations are off; start the server with --admin-key-file FILE "
                           "(GANSERVE_ADMIN_KEYS_FILE) to turn them on")
        if not holds_key(request.scope["headers"], serving.admin_keys):
            raise AdminKeyNeeded("admin operations need an admin key: send 'Authorization: Bearer ADMINKEY' with a "
                                 "key from the admin key file")

    return [Route("/admin/models/{name}/load", answering(load), methods=["POST"]),
            Route("/admin/models/{name}/rollback", answering(rollback), methods=["POST"])]


def _version(value) -> str | None:
    """A version as JSON may spell it: "4" or 4."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    return LOAD_FIELDS["version"].check(value)
