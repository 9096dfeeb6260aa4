"""Weight resolution: offline from a hand-built Hugging Face cache, local-only folders, and the tiny fallback.

The fake cache has the hub's real layout (``models--org--name/refs/main`` + ``snapshots/<commit>/...``), so the
lookups go through ``huggingface_hub.snapshot_download(local_files_only=True)`` exactly as on a server.
"""

import os

import huggingface_hub.constants
import pytest
from support.pipelines import PLUGIN, LoopPipeline
from trajplate.presets import Preset
from trajplate.tiny import MARKER, ensure_tiny, is_built, tiny_root
from trajplate.weights import WeightsError, cached_dir, local_weights_dir, resolve_weights, weights_status

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_repo(cache, repo_id, files, commit=COMMIT, ref="main"):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    for name, text in files.items():
        path = repo / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return repo / "snapshots" / commit


def preset(**overrides):
    data = {
        "id": "test-loop", "name": "t", "description": "t",
        "base": {"repo_id": "tiny-org/base", "revision": "main", "allow_patterns": ["*.json"]},
        "adapter": {"repo_id": "tiny-org/adapter", "revision": COMMIT, "subfolder": "weights"},
        "native": {"width": 32, "height": 24, "frames": 6, "fps": 8},
        "defaults": {"steps": 2, "guidance": 1.0, "scheduler": "DDIMScheduler"},
        "licence": {"base": "x", "adapter": "y"},
    }
    data.update(overrides)
    return Preset.model_validate(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TRAJPLATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRAJPLATE_PLUGINS", PLUGIN)
    return cache


def test_resolves_pinned_snapshots_offline(hub):
    base = fake_repo(hub, "tiny-org/base", {"model_index.json": "{}"})
    adapter = fake_repo(hub, "tiny-org/adapter", {"weights/config.json": "{}"})
    resolved = resolve_weights(preset(), allow_tiny=False)
    assert not resolved.tiny
    assert resolved.base_dir == base and resolved.adapter_dir == adapter / "weights"
    assert resolved.revisions == {"base": f"tiny-org/base@{COMMIT}", "adapter": f"tiny-org/adapter@{COMMIT}"}
    status = weights_status(preset())
    assert status["base"]["cached"] and status["adapter"]["cached"] and status["adapter"]["revision"] == COMMIT


def test_other_revision_is_not_cached_and_the_error_names_the_fix(hub):
    fake_repo(hub, "tiny-org/base", {"model_index.json": "{}"})
    fake_repo(hub, "tiny-org/adapter", {"weights/config.json": "{}"})
    other = preset(adapter={"repo_id": "tiny-org/adapter", "revision": "f" * 40})
    assert cached_dir(other, "adapter") is None and cached_dir(other, "base") is not None
    with pytest.raises(WeightsError) as err:
        resolve_weights(other, allow_tiny=False)
    assert f"tiny-org/adapter@{'f' * 40}" in str(err.value) and "trajplate download test-loop" in str(err.value)


def test_local_only_weights_live_in_the_trajplate_home(hub):
    fake_repo(hub, "tiny-org/base", {"model_index.json": "{}"})
    local = preset(adapter={"repo_id": "someone/unreleased", "local_only": True})
    with pytest.raises(WeightsError, match="no public repository"):
        resolve_weights(local, allow_tiny=False)
    folder = local_weights_dir("test-loop", "adapter")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    resolved = resolve_weights(local, allow_tiny=False)
    assert resolved.adapter_dir == folder and resolved.revisions["adapter"] == f"local:{folder}"


def test_tiny_fallback_builds_once_and_loads_through_the_real_code(hub):
    resolved = resolve_weights(preset())  # nothing cached: tiny weights stand in
    assert resolved.tiny and resolved.revisions == {"base": "tiny", "adapter": "tiny"}
    assert resolved.base_dir == tiny_root("test-loop") / "base" and is_built("test-loop")
    pipe = LoopPipeline.load(preset(), resolved.base_dir, resolved.adapter_dir)
    assert pipe.scheduler.config.num_train_timesteps == 1000 and pipe.frames == 6
    marker = tiny_root("test-loop") / MARKER
    stamp = os.stat(marker).st_mtime_ns
    ensure_tiny("test-loop")
    assert os.stat(marker).st_mtime_ns == stamp  # current: not rebuilt
    marker.write_text('{"fingerprint": "old code"}')
    assert not is_built("test-loop")
    ensure_tiny("test-loop")  # the pipeline code changed: rebuilt
    assert is_built("test-loop")
    assert [p.name for p in tiny_root("test-loop").parent.iterdir() if p.name.startswith(".test-loop.build")] == []
