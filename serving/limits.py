"""ASGI middleware in front of the BentoML app:

- bounds request bodies (413 beyond the limit) before anything parses them;
- refuses multipart text where a file is expected (BentoML would treat the text as a URL to
  download), with a 400 that says how to send a file;
- refuses unknown JSON fields (a typo like "sead" would otherwise be ignored silently);
- rewrites BentoML's validation errors into one message that names the field, the value
  received and what is allowed.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

FILE_FIELDS = (b"images", b"array")
_PART = re.compile(rb'content-disposition:[ \t]*form-data;[ \t]*name="([^"]*)"([^\r\n]*)', re.IGNORECASE)


class RequestGuard:
    def __init__(self, app, max_bytes: int, fields: dict[str, set[str]] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.fields = fields or {}  # route -> the fields its API takes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _reply(send, 413, f"request body: {declared.decode('latin-1')} bytes is too large; "
                                           f"the limit is {self.max_bytes} bytes (GANSERVE_MAX_BODY_BYTES)")
        body = b""
        more = True
        while more:  # bodies are bounded, so reading them whole is safe
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await _reply(send, 413, f"request body: more than {self.max_bytes} bytes is too large "
                                               "(GANSERVE_MAX_BODY_BYTES)")
        unknown = self._unknown_fields(scope["path"], headers.get(b"content-type", b""), body)
        if unknown:
            allowed = ", ".join(sorted(self.fields[scope["path"]])) or "none"
            return await _reply(send, 400, f"{unknown[0]}: not a field of {scope['path']}; its fields are {allowed}")
        text_field = _file_field_sent_as_text(headers.get(b"content-type", b""), body)
        if text_field:
            return await _reply(send, 400, f"{text_field}: expected an uploaded file, got a text field; "
                                           f"send files with curl -F {text_field}=@FILE")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _ExplainValidation(send, body))

    def _unknown_fields(self, path: str, content_type: bytes, body: bytes) -> list[str]:
        if path not in self.fields or not content_type.startswith(b"application/json") or not body.strip():
            return []
        try:
            payload = json.loads(body)
        except ValueError:
            return []  # BentoML answers malformed JSON itself
        return sorted(set(payload) - self.fields[path]) if isinstance(payload, dict) else []


def _file_field_sent_as_text(content_type: bytes, body: bytes) -> str | None:
    if content_type.startswith(b"multipart/form-data"):
        for name, rest in _PART.findall(body):
            if name in FILE_FIELDS and b"filename" not in rest.lower():
                return name.decode()
    elif content_type.startswith(b"application/x-www-form-urlencoded"):
        for name in parse_qs(body.decode("latin-1")):
            if name.encode() in FILE_FIELDS:
                return name
    return None


class _ExplainValidation:
    """Wraps `send`: a 400 from pydantic validation gets a message with field, value and rule."""

    def __init__(self, send, request_body: bytes):
        self.send = send
        self.request_body = request_body
        self.start = None
        self.chunks: list[bytes] = []

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            if message["status"] == 400:
                self.start = message  # hold it until the body says what kind of 400 it is
                return None
            return await self.send(message)
        if self.start is None or message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return None
        body = self._explained(b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    def _explained(self, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict) or not isinstance(payload.get("detail"), list):
            return body
        try:
            request = json.loads(self.request_body) if self.request_body else {}
        except ValueError:
            request = None
        messages = [_describe(error, request) for error in payload["detail"] if isinstance(error, dict)]
        payload["error"] = "; ".join(messages) or payload.get("error")
        return json.dumps(payload).encode()


def _describe(error: dict, request) -> str:
    location = [str(part) for part in error.get("loc", [])]
    field = ".".join(location) or "body"
    if error.get("type") == "json_invalid":
        return f"body: not valid JSON ({error.get('msg', '')})"
    value = request
    try:
        for part in error.get("loc", []):
            value = value[part]
    except (KeyError, IndexError, TypeError):
        return f"{field}: {error.get('msg', 'invalid')}"
    return f"{field}: {json.dumps(value)[:80]} is not allowed ({error.get('msg', 'invalid')})"


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
