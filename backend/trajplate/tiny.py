"""Tiny randomly initialised weights of every pipeline, built once and cached under ``<home>/tiny/<pipeline>``.

Each pipeline writes its own (``PIPELINE.build_tiny(root)``: same classes and folder layouts as the real weights,
``root/base`` and ``root/adapter``), so tests and the demo on machines without weights or GPU load them through the
real loading code. A build goes to a temporary folder that is renamed into place under a file lock, so concurrent
workers never see half-written weights. The ``.complete`` marker records a fingerprint of the pipeline's source: when
the pipeline code changes, the tiny weights are rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from filelock import FileLock

from .pipelines.registry import pipeline_class
from .weights import trajplate_home

MARKER = ".complete"


def tiny_root(pipeline_id: str) -> Path:
    """``<home>/tiny/<pipeline_id>`` (holds ``base/`` and ``adapter/`` once built)."""
    return trajplate_home() / "tiny" / pipeline_id


def _fingerprint(pipeline_id: str) -> str:
    """sha256 over the source files of the pipeline's package (or module, for a single-file plugin)."""
    module_file = Path(sys.modules[pipeline_class(pipeline_id).__module__].__file__)
    files = sorted(module_file.parent.rglob("*.py")) if module_file.name == "__init__.py" else [module_file]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def is_built(pipeline_id: str) -> bool:
    """True when tiny weights of ``pipeline_id`` exist and match the current pipeline code."""
    marker = tiny_root(pipeline_id) / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["fingerprint"] == _fingerprint(pipeline_id)
    except (ValueError, KeyError):
        return False


def ensure_tiny(pipeline_id: str, *, force: bool = False) -> Path:
    """Build the tiny weights of ``pipeline_id`` unless current ones exist; returns the root folder.

    Raises :class:`trajplate.pipelines.registry.UnknownPipeline` for an unknown id and whatever the pipeline's
    ``build_tiny`` raises (the partial build is removed).
    """
    root = tiny_root(pipeline_id)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{pipeline_id}.lock")):
        if not force and is_built(pipeline_id):
            return root
        tmp = root.parent / f".{pipeline_id}.build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            pipeline_class(pipeline_id).build_tiny(tmp)
            (tmp / MARKER).write_text(json.dumps({"pipeline": pipeline_id, "fingerprint": _fingerprint(pipeline_id)}))
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root
