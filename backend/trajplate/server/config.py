"""Server settings and the one rule that keeps a GPU box safe: off loopback, a bearer token is mandatory."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..weights import trajplate_home

DEFAULT_PORT = 8765
MB = 1024 * 1024


class ConfigError(ValueError):
    """Settings that must not be served; the message says which option fixes it."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (with or without brackets)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    return trajplate_home() / "data"


@dataclass
class ServerConfig:
    """Everything ``trajplate serve`` takes. ``token`` defaults to ``$TRAJPLATE_TOKEN``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = field(default_factory=lambda: os.environ.get("TRAJPLATE_TOKEN") or None)
    data_dir: Path = field(default_factory=default_data_dir)
    executor: Literal["embedded", "ray"] = "embedded"
    ray_address: str | None = field(default_factory=lambda: os.environ.get("RAY_ADDRESS") or None)
    max_upload_bytes: int = 512 * MB
    max_queue: int = 100
    allow_tiny: bool = True
    allowed_origins: tuple[str, ...] = ()
    devices: list[str] | None = None
    memory_budget_bytes: int | None = None
    accept_research_licences: bool = False  # presets with licence.research_only run only when this is set

    def validate(self) -> ServerConfig:
        """Raise :class:`ConfigError` for a non-loopback bind without a token or for nonsense limits."""
        if not is_loopback_host(self.host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host}: a non-loopback address needs a bearer token. "
                "Fix: pass --token (or set TRAJPLATE_TOKEN), or bind 127.0.0.1")
        if self.max_upload_bytes <= 0 or self.max_queue <= 0:
            raise ConfigError("--max-upload-mb and --max-queue must be positive")
        if self.executor not in ("embedded", "ray"):
            raise ConfigError(f"--executor must be embedded or ray; got {self.executor!r}")
        return self
