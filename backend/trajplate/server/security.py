"""Request guard (pure ASGI middleware): bearer token, loopback Host and cross-origin checks.

- With a token configured every request must carry ``Authorization: Bearer <token>`` (constant-time compare),
  else 401.
- A loopback server answers only to loopback ``Host`` names (DNS rebinding: a page on evil.example that resolves to
  127.0.0.1 sends ``Host: evil.example``) and refuses browser requests whose ``Origin`` is not the server itself or an
  allowed origin, with 403 — the check ComfyUI applies. Blender's client sends no Origin, so it is unaffected.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import is_loopback_host


def _host_port(value: str) -> tuple[str, str]:
    parts = urlsplit(value if "//" in value else f"//{value}")
    return (parts.hostname or "").lower(), str(parts.port or "")


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None, loopback: bool, allowed_origins: tuple[str, ...] = ()):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.loopback = loopback
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback and host and not is_loopback_host(_host_port(host)[0]):
            return 403, f"Host {host!r} refused: this server only answers on loopback names"
        origin = headers.get("origin")
        if self.loopback and origin is not None and origin.rstrip("/").lower() not in self.allowed_origins:
            if _host_port(origin) != _host_port(host):
                return 403, f"cross-origin request from {origin!r} refused (start the server with --allow-origin)"
        if self.expected is not None:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                return 401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
        return None
