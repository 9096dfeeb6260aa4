"""The job-API client's failure paths that a healthy server cannot produce (plain Python, no bpy needed)."""

from __future__ import annotations

import importlib.util
import socket
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
    assert imported <= {"http", "ipaddress", "json", "os", "urllib", "uuid", "pathlib", "typing"}, imported
