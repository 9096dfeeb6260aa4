"""HTTP client of the TrajPlate job API (DESIGN: job API, ``/v1``).

Standard library only (Blender's Python ships no extra packages) and no ``bpy``: every call here runs in the job
manager's worker thread. Each failure becomes a :class:`BackendError` whose ``line`` is the one sentence the artist
reads in the panel and whose ``detail`` goes to the system console.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

API = "/v1"
CHUNK = 1 << 16


class BackendError(Exception):
    """A request to the backend failed.

    ``line``: one artist-facing sentence naming what to do; ``detail``: the full story for the console;
    ``status``: the HTTP status when the server answered, else None.
    """

    def __init__(self, line: str, detail: str = "", status: int | None = None):
        super().__init__(line)
        self.line = line
        self.detail = detail or line
        self.status = status


class DownloadCancelled(Exception):
    """The artist cancelled while a take was downloading; the partial file is already removed."""


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine (``localhost``, 127.0.0.0/8 or ::1)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _field_message(body: Any) -> str:
    """FastAPI error bodies: ``{"detail": "..."}`` or a list of pydantic errors with ``loc`` and ``msg``."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return f"{loc}: {first.get('msg', '')}" if loc else str(first.get("msg", ""))
    return str(detail)


def _stream(segments, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Bytes of ``segments`` (bytes, or ``(open file, size)``) in order, files read ``chunk`` bytes at a time. A file
    that is not ``size`` bytes long any more raises BackendError (the Content-Length already went out)."""
    for segment in segments:
        if isinstance(segment, bytes):
            yield segment
            continue
        handle, size = segment
        sent = 0
        while block := handle.read(min(chunk, size - sent)):
            sent += len(block)
            yield block
        if sent != size or handle.read(1):
            raise BackendError(f"{Path(handle.name).name} changed while it was being uploaded; press Retry",
                               f"{handle.name}: {sent} of {size} bytes")


class Client:
    """One backend: ``base_url`` like ``http://127.0.0.1:8765``; ``token`` sent as a Bearer header when set.

    ``timeout`` (seconds) bounds each request; ``download_timeout`` bounds a bundle upload and each read while a
    video downloads.
    """

    def __init__(self, base_url: str, token: str = "", timeout: float = 10.0, download_timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.download_timeout = download_timeout

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                 content_type: str | None = None, timeout: float | None = None, content_length: int | None = None):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        if content_length is not None:  # a streamed body: urllib sends the iterable's chunks as they come
            headers["Content-Length"] = str(content_length)
        req = urllib.request.Request(self.base_url + API + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)  # noqa: S310 (URL from prefs)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                message = _field_message(json.loads(raw))
            except ValueError:
                message = raw.strip()[:200] or exc.reason
            if exc.code in (401, 403):
                line = f"Backend refused the token ({exc.code}): set the token in TrajPlate's preferences"
            elif exc.code == 404:
                line = f"Backend has no {path} ({exc.code}): {message}"
            else:
                line = f"Backend error {exc.code}: {message}"
            raise BackendError(line, f"{method} {req.full_url} -> {exc.code}: {raw}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise BackendError(
                    f"Backend at {self.base_url} did not answer within {timeout or self.timeout:g} s "
                    "(raise the timeout in preferences if it is busy)", f"{method} {req.full_url}: {exc!r}") from exc
            raise BackendError(
                f"Backend not reachable at {self.base_url}: start it (Local backend ▸ Start) or fix the URL "
                "in preferences", f"{method} {req.full_url}: {reason!r}") from exc

    def _json(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
              content_type: str | None = None, timeout: float | None = None, content_length: int | None = None) -> Any:
        with self._request(method, path, body, content_type, timeout, content_length) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BackendError(f"Backend sent an answer that is not JSON for {path}",
                               raw[:500].decode("utf-8", "replace")) from exc

    # -- the API ----------------------------------------------------------------------------------------------

    def health(self) -> dict:
        """``GET /v1/health`` -> {status, version, gpu, queue_length, executor}."""
        return self._json("GET", "/health")

    def pipelines(self) -> list[dict]:
        """``GET /v1/pipelines`` -> [{id, name, available, tiny_available, licence, native, defaults, requirements,
        variants, tiers}]."""
        return self._json("GET", "/pipelines")

    def submit(self, bundle: Path, params: dict, client_job_id: str, source_video: Path | None = None) -> str:
        """``POST /v1/jobs`` with the bundle zip, the JSON params and, optionally, a take's movie file as
        ``source_video``; returns the server's job id.

        ``client_job_id`` makes a retry idempotent: the server answers with the job it already has. Raises
        :class:`BackendError` (also when the source video cannot be read here).
        """
        boundary = uuid.uuid4().hex
        files = [("bundle", Path(bundle), "application/zip")]
        if source_video is not None:  # any container FFmpeg decodes; the server probes the content
            files.append(("source_video", Path(source_video), "application/octet-stream"))
        # The body is streamed from the files (a bundle can be gigabytes: Blender's memory must not hold it twice).
        segments: list[bytes | tuple[Any, int]] = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in (("params", json.dumps(params)), ("client_job_id", client_job_id))]
        handles = []
        try:
            for name, path, kind in files:
                try:
                    handle = path.open("rb")
                except OSError as exc:
                    raise BackendError(f"Could not read the {name.replace('_', ' ')} {path}: {exc.strerror or exc}",
                                       repr(exc)) from exc
                handles.append(handle)
                segments += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                             f'filename="{path.name}"\r\nContent-Type: {kind}\r\n\r\n'.encode(),
                             (handle, os.fstat(handle.fileno()).st_size), b"\r\n"]
            segments.append(f"--{boundary}--\r\n".encode())
            length = sum(len(seg) if isinstance(seg, bytes) else seg[1] for seg in segments)
            # An upload is transfer-bound like a download (and the server validates the bundle before answering).
            answer = self._json("POST", "/jobs", _stream(segments), f"multipart/form-data; boundary={boundary}",
                                self.download_timeout, content_length=length)
        finally:
            for handle in handles:
                handle.close()
        if not isinstance(answer, dict) or "id" not in answer:
            raise BackendError("Backend accepted the job but sent no job id", repr(answer))
        return str(answer["id"])

    def job(self, job_id: str) -> dict:
        """``GET /v1/jobs/{id}`` -> {id, state, progress {stage, step, steps, eta_s}, error}."""
        return self._json("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        """``DELETE /v1/jobs/{id}``: the server stops the job within one denoising step."""
        return self._json("DELETE", f"/jobs/{job_id}")

    def metadata(self, job_id: str) -> dict:
        """``GET /v1/jobs/{id}/metadata``: provenance, ``shot_frames`` and ``score`` when requested."""
        return self._json("GET", f"/jobs/{job_id}/metadata")

    def download_video(self, job_id: str, dest: Path, cancelled=lambda: False) -> Path:
        """Stream ``GET /v1/jobs/{id}/video`` into ``dest`` (an MP4).

        Writes ``dest`` + ``.part`` and renames only after the last byte (checked against Content-Length), so
        ``dest`` exists complete or not at all. Raises :class:`BackendError` on a broken connection and
        :class:`DownloadCancelled` when ``cancelled()`` turns true; the partial file is removed in both cases.
        """
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        try:
            with self._request("GET", f"/jobs/{job_id}/video", timeout=self.download_timeout) as resp, \
                    open(part, "wb") as out:
                expected = resp.headers.get("Content-Length")
                received = 0
                while chunk := resp.read(CHUNK):
                    if cancelled():
                        raise DownloadCancelled(job_id)
                    out.write(chunk)
                    received += len(chunk)
            if expected is not None and received != int(expected):
                raise BackendError(
                    "Connection lost while downloading the take; press Retry",
                    f"job {job_id}: got {received} of {expected} bytes")
            os.replace(part, dest)
            return dest
        except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise BackendError("Connection lost while downloading the take; press Retry",
                               f"job {job_id}: {exc!r}") from exc
        except OSError as exc:
            raise BackendError(f"Could not write the take to {dest.parent}: {exc.strerror or exc}", repr(exc)) from exc
        finally:
            part.unlink(missing_ok=True)
