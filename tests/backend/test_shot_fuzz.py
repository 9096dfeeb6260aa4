"""Property tests: whatever random damage is done to a valid bundle, load_shot returns a Shot or raises BundleError.

Damage is applied at three depths: to the raw zip bytes (mostly caught by zip structure and CRC checks), and to
``arrays.npz``, ``shot.json`` or a PNG re-wrapped in a well-formed zip, so the parsers behind the CRC check see it.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.synthetic import png, synthetic_parts
from trajplate.shot import BundleError, Shot, load_shot

from addon.bundle import write_bundle

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_bundle() -> bytes:
    meta, arrays, first_frame = synthetic_parts(num_frames=3, width=24, height=16)
    with tempfile.TemporaryDirectory() as folder:
        return write_bundle(Path(folder) / "b.zip", meta, arrays, {"first_frame.png": png(first_frame)}).read_bytes()


VALID = _valid_bundle()
ENTRIES = {
    name: zipfile.ZipFile(io.BytesIO(VALID)).read(name) for name in zipfile.ZipFile(io.BytesIO(VALID)).namelist()
}


def _rewrap(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, content in ENTRIES.items():
            archive.writestr(entry, data if entry == name else content)
    return buffer.getvalue()


def _damage(data: bytes, edits: list[tuple[int, int]], cut: int | None, insert: tuple[int, bytes] | None) -> bytes:
    damaged = bytearray(data)
    for position, value in edits:
        damaged[position % len(damaged)] = value
    if insert is not None:
        damaged[insert[0] % len(damaged) : insert[0] % len(damaged)] = insert[1]
    if cut is not None:
        damaged = damaged[: cut % (len(damaged) + 1)]
    return bytes(damaged)


damage = st.tuples(
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    st.none() | st.integers(0, 1 << 20),
    st.none() | st.tuples(st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
)


def _load_or_bundle_error(data: bytes) -> None:
    try:
        assert isinstance(load_shot(data), Shot)
    except BundleError:
        pass


def test_the_undamaged_bundle_loads():
    assert load_shot(VALID).num_frames == 3
    assert load_shot(_rewrap("arrays.npz", ENTRIES["arrays.npz"])).num_frames == 3


@SETTINGS
@given(damage)
def test_damaged_zip_bytes(change):
    _load_or_bundle_error(_damage(VALID, *change))


@SETTINGS
@given(st.sampled_from(["arrays.npz", "shot.json", "frames/first_frame.png"]), damage)
def test_damaged_entry_behind_a_valid_crc(name, change):
    _load_or_bundle_error(_rewrap(name, _damage(ENTRIES[name], *change)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(st.data())
def test_shot_json_with_random_values(data):
    meta = json.loads(ENTRIES["shot.json"])
    for _ in range(data.draw(st.integers(1, 3))):
        target = meta
        key = data.draw(st.sampled_from(sorted(target)))
        while isinstance(target[key], dict) and target[key] and data.draw(st.booleans()):
            target = target[key]
            key = data.draw(st.sampled_from(sorted(target)))
        target[key] = data.draw(json_values)
    _load_or_bundle_error(_rewrap("shot.json", json.dumps(meta).encode()))


@SETTINGS
@given(st.integers(0, 17), st.data())
def test_arrays_with_random_shapes_and_dtypes(index, data):
    npz = zipfile.ZipFile(io.BytesIO(ENTRIES["arrays.npz"]))
    arrays = {info.filename[:-4]: np.load(io.BytesIO(npz.read(info))) for info in npz.infolist()}
    name = sorted(arrays)[index % len(arrays)]
    dtype = data.draw(st.sampled_from(["<f8", ">f8", "<f4", "<i4", "<i8", "|u1", "|b1", "<f2"]))
    shape = data.draw(st.lists(st.integers(0, 5), max_size=4).map(tuple) | st.just(arrays[name].shape))
    arrays[name] = np.zeros(shape, dtype)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _load_or_bundle_error(_rewrap("arrays.npz", buffer.getvalue()))
