"""The ``trajplate`` command line: in-process run, pipelines listing against a fake HF cache, offline download."""

import json
import subprocess
import sys

from support.pipelines import PRESET, free_port, service_env
from trajplate.video import read_mp4


def trajplate(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "trajplate.cli", *args], env=env or service_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_run_writes_the_take_and_says_tiny_loudly(tmp_path, small_shot_bundle):
    out = trajplate("run", str(small_shot_bundle), "--pipeline", "test-loop", "-o", str(tmp_path / "take.mp4"),
                    "--steps", "3", "--seed", "4")
    assert out.returncode == 0, out.stderr
    assert "TINY RANDOM WEIGHTS" in out.stderr and "denoising    3/3" in out.stdout
    decoded = read_mp4(tmp_path / "take.mp4")
    assert decoded.frames.shape == (PRESET.native.frames, 24, 32, 3) and decoded.metadata["seed"] == "4"
    meta = json.loads((tmp_path / "take.json").read_text())
    assert meta["tiny"] is True and meta["steps"] == 3 and meta["pipeline"] == "test-loop"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.json", "take.mp4"]  # no job folder left behind



def test_run_refuses_missing_weights_and_bad_bundles(tmp_path, small_shot_bundle):
    plain = service_env(TRAJPLATE_PLUGINS="")  # the built-in presets only: no torch import before the checks
    refused = trajplate("run", str(small_shot_bundle), "--pipeline", "posetraj", "-o", str(tmp_path / "x.mp4"),
                        "--no-tiny", env=plain)
    assert refused.returncode == 1 and "trajplate download posetraj" in refused.stderr
    (tmp_path / "not-a-bundle.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    bad = trajplate("run", str(tmp_path / "not-a-bundle.zip"), "--pipeline", "posetraj", "-o", str(tmp_path / "y.mp4"),
                    env=plain)
    assert bad.returncode == 2 and "trajplate run:" in bad.stderr
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()


def test_pipelines_lists_every_preset_with_cache_state(tmp_path):
    """A hand-built HF cache (refs/main + snapshots/<commit>) in a temporary HF_HOME makes TrajectoryCrafter's
    weights count as cached; nothing else is."""
    commit = "a" * 40
    for repo in ("alibaba-pai/CogVideoX-Fun-V1.1-5b-InP", "TrajectoryCrafter/TrajectoryCrafter"):
        folder = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(commit)
        (folder / "snapshots" / commit).mkdir(parents=True)
        (folder / "snapshots" / commit / "config.json").write_text("{}")
    out = trajplate("pipelines", "--json", env=service_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr
    listed = {p["id"]: p for p in json.loads(out.stdout)}
    assert {"posetraj", "trajectorycrafter", "test-loop"} <= set(listed)
    crafter = listed["trajectorycrafter"]
    assert crafter["weights"]["base"]["cached"] and crafter["weights"]["adapter"]["cached"]
    assert crafter["licence"]["research_only"] and crafter["native"]["frames"] == 49
    assert not listed["posetraj"]["weights"]["adapter"]["cached"] and listed["posetraj"]["weights"]["adapter"]["local_only"]
    assert listed["test-loop"]["implemented"] and "step_ms" in listed["test-loop"]["options_schema"]["properties"]


def test_download_without_network_fails_clearly(tmp_path):
    offline = service_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TRAJPLATE_PLUGINS="")
    out = trajplate("download", "trajectorycrafter", env=offline)
    assert out.returncode == 1
    assert "not reachable" in out.stderr and "alibaba-pai/CogVideoX-Fun-V1.1-5b-InP" in out.stderr
    unknown = trajplate("download", "nope", env=offline)
    assert unknown.returncode == 1 and "valid:" in unknown.stderr


def test_serve_refuses_a_broken_preset_naming_file_and_field(tmp_path):
    """A typo in a preset is a setup error: `trajplate serve` exits 2 naming the file and field, before any port."""
    folder = tmp_path / "presets" / "pipelines"
    folder.mkdir(parents=True)
    (folder / "magicmotion.toml").write_text('id = "magicmotion"\nname = "MagicMotion"\n')
    out = trajplate("serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
                    env=service_env(TRAJPLATE_PRESETS=str(tmp_path / "presets"), TRAJPLATE_PLUGINS=""), timeout=60)
    assert out.returncode == 2, out.stderr
    assert "trajplate serve: preset folder" in out.stderr and "magicmotion.toml: field '" in out.stderr
    assert "Traceback" not in out.stderr
