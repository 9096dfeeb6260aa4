"""Auth and browser protection over real HTTP: bearer token, loopback Host names, foreign origins, and the refusal
to bind off loopback without a token."""

import subprocess
import sys

import httpx
import pytest
from support.pipelines import ServerProcess, service_env
from trajplate.server.config import ConfigError, ServerConfig

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("auth") / "data"
    data.mkdir()
    proc = ServerProcess(data, token=TOKEN)
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_bearer_token_required(server):
    url = f"{server.url}/v1/health"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in missing.json()["detail"]
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": TOKEN}).status_code == 401  # the scheme is part of it
    assert httpx.post(f"{server.url}/v1/jobs", files={"bundle": ("x.zip", b"x")}).status_code == 401
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    good = httpx.get(url, headers=server.headers)
    assert good.status_code == 200 and good.json()["auth"] is True


def test_foreign_origins_and_host_names_refused_on_loopback(server):
    url = f"{server.url}/v1/health"
    foreign = httpx.get(url, headers={**server.headers, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["detail"]
    other_port = httpx.get(url, headers={**server.headers, "Origin": "http://127.0.0.1:1"})
    assert other_port.status_code == 403
    same = httpx.get(url, headers={**server.headers, "Origin": server.url})
    assert same.status_code == 200
    rebinding = httpx.get(url, headers={**server.headers, "Host": f"evil.example:{server.port}"})
    assert rebinding.status_code == 403 and "loopback" in rebinding.json()["detail"]
    assert httpx.get(url, headers={**server.headers, "Host": f"localhost:{server.port}"}).status_code == 200


def test_non_loopback_bind_needs_a_token():
    out = subprocess.run([sys.executable, "-m", "trajplate.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                         env=service_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--token" in out.stderr and "0.0.0.0" in out.stderr
    with pytest.raises(ConfigError, match="bearer token"):
        ServerConfig(host="192.168.1.20", token=None).validate()
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        ServerConfig(host=host, token=None).validate()
    ServerConfig(host="0.0.0.0", token="t").validate()
