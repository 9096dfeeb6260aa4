"""Streaming multipart upload of a job: the bundle (and an optional ``source_video``) go straight to files in the
data dir, each hashed on the way.

Starlette's form parser would spool the file to the system temp dir without a size limit; here every chunk is
counted as it arrives and the request is refused with 413 the moment the files together pass the limit (or at once
when its Content-Length already does), and nothing is written outside ``<data_dir>/uploads``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FILE_FIELDS = ("bundle", "source_video")
FIELDS = (*FILE_FIELDS, "params", "client_job_id", "priority")
MAX_FIELD_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 256 * 1024  # headers and text fields on top of the files themselves


class UploadError(Exception):
    """The upload is refused: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class UploadedFile:
    """One file part, complete: where it lies in the uploads folder (the caller moves or deletes it), size, sha256."""

    path: Path
    size: int = 0
    sha256: str = ""


@dataclass
class Upload:
    """A parsed job upload: the file parts by field name (``bundle``, optionally ``source_video``) and the text
    fields by name."""

    files: dict[str, UploadedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def bundle_path(self) -> Path:
        return self.files["bundle"].path

    @property
    def sha256(self) -> str:
        """sha256 of the bundle."""
        return self.files["bundle"].sha256


class _Receiver:
    def __init__(self, upload_dir: Path, max_bytes: int):
        self.upload_dir, self.max_bytes = upload_dir, max_bytes
        self.upload = Upload()
        self._received = 0  # bytes of every file part so far
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._file = None
        self._part: UploadedFile | None = None
        self._text = bytearray()
        self._hash = hashlib.sha256()

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._text = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in FIELDS:
            raise UploadError(422, f"unknown form field {name!r}; valid fields: {', '.join(FIELDS)}")
        if name in self.upload.fields or name in self.upload.files:
            raise UploadError(422, f"form field {name!r} appears twice; send it once")
        self._name = name
        if name in FILE_FIELDS:
            self._part = UploadedFile(self.upload_dir / f"{uuid.uuid4().hex}.{name}.part")
            self.upload.files[name] = self._part
            self._hash = hashlib.sha256()
            self._file = open(self._part.path, "wb")  # noqa: SIM115 - closed in on_part_end / close()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part is not None:
            self._part.size += len(chunk)
            self._received += len(chunk)
            if self._received > self.max_bytes:
                raise UploadError(413, f"{self._name}: the upload passes the server's limit of {self.max_bytes} "
                                       "bytes (bundle and source video together); export fewer frames or a smaller "
                                       "resolution, or raise --max-upload-mb")
            self._hash.update(chunk)
            self._file.write(chunk)
        else:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                raise UploadError(413, f"{self._name}: longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._part is not None:
            self._file.close()
            self._file = None
            self._part.sha256 = self._hash.hexdigest()
            self._part = None
        elif self._name is not None:
            try:
                self.upload.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UploadError(422, f"{self._name}: not valid UTF-8 text") from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def discard(upload: Upload) -> None:
    """Delete whatever file parts are still in the uploads folder (the ones moved into a job folder are gone)."""
    for part in upload.files.values():
        part.path.unlink(missing_ok=True)


async def receive_upload(request: Request, upload_dir: Path, max_bytes: int) -> Upload:
    """Parse a ``multipart/form-data`` job submission, streaming the file parts (:data:`FILE_FIELDS`) to
    ``upload_dir``.

    Raises :class:`UploadError`: 415 for another content type, 413 when the files together pass ``max_bytes``
    (nothing is kept), 400 for a malformed body, 422 for a missing bundle or an unknown/duplicate field.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(415, "the body must be multipart/form-data with the fields bundle (file) and params (JSON)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise UploadError(413, f"bundle: the request ({declared} bytes) is larger than the server's upload limit of "
                               f"{max_bytes} bytes (bundle and source video together)")
    receiver = _Receiver(upload_dir, max_bytes)
    callbacks = {name: getattr(receiver, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python_multipart's parse errors are ValueErrors
        receiver.close()
        discard(receiver.upload)
        raise UploadError(400, f"malformed multipart body: {exc}") from exc
    except BaseException:
        receiver.close()
        discard(receiver.upload)
        raise
    if "bundle" not in receiver.upload.files or receiver._file is not None:
        receiver.close()
        discard(receiver.upload)
        raise UploadError(422, "bundle: missing (or cut short); attach the shot bundle zip as the file field 'bundle'")
    return receiver.upload
