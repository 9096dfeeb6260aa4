"""The API refuses research-only pipelines unless the server was started with --accept-research-licences."""

from __future__ import annotations

import httpx
from support.pipelines import ServerProcess, submit


def test_research_only_pipeline_needs_the_licence_flag(tmp_path, small_shot_bundle):
    params = {"pipeline": "trajectorycrafter", "options": {"target_pose": [0, 10, 0, 0, 0]}}
    for flags, status, words in (((), 403, ["research only", "--accept-research-licences"]),
                                 (("--accept-research-licences",), 422, ["bundle:"])):
        (tmp_path / str(status)).mkdir()
        server = ServerProcess(tmp_path / str(status), *flags).start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                # a valid bundle is refused before it is read; with the flag, a broken one gets past the gate to 422
                bundle = small_shot_bundle.read_bytes() if status == 403 else b"not a zip"
                answer = submit(client, bundle, params)
                assert answer.status_code == status, answer.text
                assert all(w in answer.json()["detail"] for w in words)
                assert client.get("/v1/jobs").json() == []
        finally:
            server.stop()
