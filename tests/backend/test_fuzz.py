"""Property-based fuzzing of submissions over real HTTP: 500+ bundles and parameter sets, only 4xx (or an accepted
job), never a 5xx, and nothing written outside the data dir."""

import io
import json
import stat
import warnings
import zipfile

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.pipelines import ServerProcess, service_env, submit
from trajplate.params import GenerateParams

OK = {200, 201}
REFUSED = {400, 413, 415, 422}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "data").mkdir()
    (root / "tmp").mkdir()
    proc = ServerProcess(root / "data", "--max-upload-mb", "2", "--max-queue", "1000",
                         env=service_env(TMPDIR=str(root / "tmp")))
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def base_bundle(small_shot_bundle):
    return small_shot_bundle.read_bytes()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
field_names = st.sampled_from([*GenerateParams.model_fields, "colour", ""])
params_text = st.one_of(
    st.fixed_dictionaries({"pipeline": st.just("test-loop"), "steps": st.integers(1, 2)}).map(json.dumps),
    st.dictionaries(field_names, json_values, max_size=4).map(lambda d: json.dumps({"pipeline": "test-loop", **d})),
    st.dictionaries(field_names, json_values, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
)


def _zip(entries):
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # duplicate names are one of the attacks
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    return out.getvalue()


def _members(bundle):
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return [(i.filename, archive.read(i), False) for i in archive.infolist()]


@st.composite
def bundles(draw, base):
    kind = draw(st.sampled_from(["bytes", "truncated", "flipped", "evil", "bomb", "meta", "valid"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flipped":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "evil":
        name = draw(st.sampled_from(["../evil.txt", "/tmp/evil.txt", "frames/../../evil.txt", "frames\\..\\evil",
                                     "shot.json", "frames/first_frame.png", "evil\x00.txt"]))
        members = _members(base)
        return _zip([*members, (name, b"evil", draw(st.booleans()))] if draw(st.booleans()) else [(name, b"x", True)])
    if kind == "bomb":  # 40 MiB of zeros deflate to ~40 KiB: the ratio limit must refuse it before inflating
        return _zip([("arrays.npz", bytes(40 << 20), False), ("shot.json", b"{}", False)])
    if kind == "meta":
        members = _members(base)
        meta = json.loads(next(d for n, d, _ in members if n == "shot.json"))
        key = draw(st.sampled_from(sorted(meta)))
        if draw(st.booleans()):
            meta.pop(key)
        else:
            meta[key] = draw(json_values)
        return _zip([(n, json.dumps(meta).encode() if n == "shot.json" else d, False) for n, d, _ in members])
    return base


@pytest.mark.slow
def test_fuzzed_submissions_never_500(server, base_bundle):
    answers = []
    with httpx.Client(base_url=server.url, timeout=60) as client:

        @settings(max_examples=500, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(bundle=bundles(base_bundle), params=params_text, client_job_id=st.none() | st.text(max_size=20))
        def one(bundle, params, client_job_id):
            fields = {} if client_job_id is None else {"client_job_id": client_job_id}
            answer = client.post("/v1/jobs", files={"bundle": ("b.zip", bundle, "application/zip")},
                                 data={"params": params, **fields})
            assert answer.status_code in OK | REFUSED, (answer.status_code, answer.text[:500])
            assert isinstance(answer.json()["detail" if answer.status_code in REFUSED else "id"], str)
            answers.append(answer.status_code)

        one()
        assert submit(client, base_bundle, {"pipeline": "test-loop", "steps": 1}).status_code == 201  # still serving
    assert len(answers) >= 500 and set(answers) & REFUSED and set(answers) & OK
    root = server.data_dir.parent
    assert list((root / "tmp").iterdir()) == []  # no spooling to the system temp dir
    assert list((server.data_dir / "uploads").iterdir()) == []
    assert not [p for p in root.rglob("*evil*")]
    assert {p.name for p in server.data_dir.iterdir()} <= {"jobs", "uploads", "jobs.sqlite3", "jobs.sqlite3-wal",
                                                          "jobs.sqlite3-shm", "server.lock"}
