"""Fixtures shared by the job-service tests: the small standard shot as upload bytes, and an HTTP client on the
module's ``server`` fixture (each module starts its own real server with the flags it tests)."""

import httpx
import pytest


@pytest.fixture(scope="module")
def bundle(small_shot_bundle):
    """The small standard shot bundle (160×96, 13 frames) as the bytes a client uploads."""
    return small_shot_bundle.read_bytes()


@pytest.fixture
def client(server):
    """An ``httpx.Client`` on the module's running server (generous timeout: tiny models run on a shared CPU)."""
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c
