"""Optional API keys: `Authorization: Bearer KEY` on every route but the probes.

Off unless a key file is given (`ganserve serve --api-key-file FILE`, or GANSERVE_API_KEYS_FILE
in a container): one key per line, blank lines and `#` comments ignored. The probes (/livez,
/readyz and the protocol's /v2/health/*) stay open for the orchestrator, the playground's files
for a browser that has yet to be given a key, and /metrics for the scraper unless
GANSERVE_PROTECT_METRICS=1. Keys are compared in constant time, every key every time (no
early exit that would time which one matched), and never logged.

A pure ASGI middleware, so it guards BentoML's own routes (/metrics, its docs page) as well
as ganserve's, and costs one header lookup per request.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

PROBES = ("/livez", "/readyz", "/v2/health/live", "/v2/health/ready")  # the orchestrator's, and the protocol's
MIN_KEY_LENGTH = 16


class KeyFileError(ValueError):
    is_user_error = True


def read_keys(path: str | Path) -> tuple[bytes, ...]:
    """The keys in `path`; refuses a file that would lock everyone out or hold weak keys."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"API key file {path}: cannot be read ({type(error).__name__})") from None
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise KeyFileError(f"API key file {path}: holds no keys (one per line); every request would be refused")
    for number, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise KeyFileError(f"API key file {path}: key {number} is shorter than {MIN_KEY_LENGTH} characters or "
                               "holds spaces; use long random keys, e.g. openssl rand -hex 32")
    return tuple(key.encode() for key in keys)


ADMIN_PREFIX = "/admin/"  # operators' routes check their own keys (serving/http/admin.py)


class BearerAuth:
    """401 with WWW-Authenticate for a request without a known key; probes pass, and so do the
    admin routes, which take only the admin keys."""

    def __init__(self, app, keys: tuple[bytes, ...], open_paths: tuple[str, ...] = PROBES):
        self.app, self.keys, self.open_paths = app, keys, open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths or scope["path"].startswith(ADMIN_PREFIX) \
                or holds_key(scope["headers"], self.keys):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                           "status": 401}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="ganserve"')]})
        await send({"type": "http.response.body", "body": body})


def holds_key(headers, keys: tuple[bytes, ...]) -> bool:
    """Whether `Authorization: Bearer KEY` names one of `keys` (headers: ASGI's (name, value) pairs)."""
    given = next((value for name, value in headers if name == b"authorization"), b"")
    scheme, _, key = given.partition(b" ")
    if scheme.lower() != b"bearer" or not key:
        return False
    matched = False
    for known in keys:  # all of them, whatever matched: the time says nothing about which
        matched |= hmac.compare_digest(key.strip(), known)
    return matched
