"""The job-API client's failure paths that a healthy server cannot produce (plain Python, no bpy needed)."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _client_module():
    # addon/client.py is stdlib-only by contract: load it on its own, without the bpy-importing package.
    spec = importlib.util.spec_from_file_location("trajplate_addon_client", REPO / "addon" / "client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cutting_server():
    """A socket server that promises 100 000 bytes of video, sends 1 000, then drops the connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    thread.join(5)
    server.close()


@pytest.fixture
def recording_server(tmp_path):
    """A real HTTP server for ``POST /v1/jobs`` that copies the body to ``body.bin`` in 64 KiB pieces (so the server
    adds nothing to the client's memory peak) and keeps the Content-Type it was sent."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            left = int(self.headers["Content-Length"])
            with open(tmp_path / "body.bin", "wb") as out:
                while left:
                    block = self.rfile.read(min(65536, left))
                    out.write(block)
                    left -= len(block)
            seen["content_type"] = self.headers["Content-Type"]
            answer = b'{"id": "job-1"}'
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "body.bin", seen
    server.shutdown()
    server.server_close()


def test_submit_streams_the_files_instead_of_holding_them(recording_server, tmp_path):
    """A 24 MB bundle and an 8 MB take go up with a client-side memory peak of a few MB, and a MIME parser finds
    both files intact in the body."""
    import email.parser
    import email.policy
    import os
    import tracemalloc

    client = _client_module()
    url, body, seen = recording_server
    bundle, take = tmp_path / "shot.zip", tmp_path / "take.mp4"
    bundle.write_bytes(os.urandom(24 << 20))
    take.write_bytes(os.urandom(8 << 20))
    tracemalloc.start()
    try:
        job_id = client.Client(url).submit(bundle, {"pipeline": "x"}, "take-1", source_video=take)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert job_id == "job-1"
    assert peak < 4 << 20, f"the client held {peak / 2**20:.1f} MB while uploading 32 MB"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {seen['content_type']}\r\n\r\n".encode() + body.read_bytes())
    parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
             for part in message.iter_parts()}
    assert parts["bundle"] == bundle.read_bytes() and parts["source_video"] == take.read_bytes()
    assert parts["client_job_id"] == b"take-1" and parts["params"] == b'{"pipeline": "x"}'


def test_interrupted_download_leaves_no_file(cutting_server, tmp_path):
    client = _client_module()
    dest = tmp_path / "take.mp4"
    with pytest.raises(client.BackendError, match="Connection lost while downloading the take; press Retry"):
        client.Client(cutting_server, download_timeout=5).download_video("job", dest)
    assert list(tmp_path.iterdir()) == []


def test_loopback_detection():
    client = _client_module()
    assert client.is_loopback("http://127.0.0.1:8765") and client.is_loopback("http://localhost:1")
    assert client.is_loopback("http://[::1]:8765")
    assert not client.is_loopback("https://gpu.example.com") and not client.is_loopback("http://10.0.0.2:8765")


def test_client_is_stdlib_only():
    source = (REPO / "addon" / "client.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
