"""Checks of a submission's fields and attached files, each failure a 422 whose message names the field and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..jobs.catalog import all_presets, installed_class
from ..params import GenerateParams
from ..pipelines.common import local_only_options

CLIENT_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ParamsError(ValueError):
    """A 422: the message names the field (``params.<field>``) and what is valid."""


def _first_error(exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (prefix, *err["loc"]))
    message = f"{where}: {err['msg']}"
    if err["type"] == "extra_forbidden":
        message += f"; valid fields: {', '.join(model.model_fields) or '(none)'}"
    return message


def parse_params(raw: str | None) -> GenerateParams:
    """The ``params`` form field → :class:`GenerateParams`, checked against the presets and the pipeline's options.

    Raises :class:`ParamsError`.
    """
    if raw is None:
        raise ParamsError('params: missing; send the JSON of GenerateParams, e.g. {"pipeline": "magicmotion"}')
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ParamsError(f"params: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"params: must be a JSON object; got {type(data).__name__}")
    try:
        params = GenerateParams.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_first_error(exc, "params", GenerateParams)) from exc
    presets = all_presets()
    preset = presets.get(params.pipeline)
    if preset is None:
        raise ParamsError(f"params.pipeline: unknown pipeline {params.pipeline!r}; valid: {', '.join(sorted(presets))}")
    cls, why = installed_class(params.pipeline)
    if cls is None:
        installed = sorted(p for p in presets if installed_class(p)[0] is not None)
        raise ParamsError(f"params.pipeline: {params.pipeline!r} is not available on this server ({why}); "
                          f"available: {', '.join(installed) or '(none)'}")
    if params.tier is not None and params.tier not in preset.tiers:
        raise ParamsError(f"params.tier: unknown tier {params.tier!r} of {preset.id}; valid: "
                          f"{', '.join(preset.tiers) or '(none)'}")
    if params.variant is not None and params.variant not in preset.variants:
        raise ParamsError(f"params.variant: unknown variant {params.variant!r} of {preset.id}; valid: "
                          f"{', '.join(preset.variants) or '(none)'}")
    options = cls.Options
    try:
        options.model_validate(params.options)
    except ValidationError as exc:
        raise ParamsError(_first_error(exc, "params.options", options)) from exc
    for name in local_only_options(options):
        if params.options.get(name) is not None:
            raise ParamsError(
                f"params.options.{name}: names a path on the server, which the HTTP API does not read; leave it out "
                f"(the shot bundle carries the inputs; a take travels as the file part source_video), or run on the "
                f"machine that holds the file with `trajplate run` ({preset.id})")
    for name in local_only_options(options, "folder"):
        value = params.options.get(name)
        if value is not None and not is_repo_id(value):
            raise ParamsError(
                f"params.options.{name}: {value!r} is not a Hugging Face repo id; over HTTP the server loads models "
                "only from its Hugging Face cache, never from a folder. Fix: name the repo as owner/name (fetched "
                f"into the server's cache beforehand), or pass the folder with `trajplate run` ({preset.id})")
    return params


def is_repo_id(value: str) -> bool:
    """True for a valid Hugging Face repo id (``name`` or ``owner/name``) that is not also an existing path here
    (``from_pretrained`` would read a folder of that name instead of the cache)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return not Path(value).exists()


def check_input_files(pipeline: str, names: list[str]) -> None:
    """Raise :class:`ParamsError` unless ``pipeline`` takes every attached input file in ``names``
    (:attr:`~trajplate.pipelines.base.TrajPipeline.input_files`)."""
    cls, _ = installed_class(pipeline)
    for name in names:
        if cls is None or name not in cls.input_files:
            takers = sorted(p for p in all_presets() if (c := installed_class(p)[0]) is not None and name in c.input_files)
            raise ParamsError(f"{name}: pipeline {pipeline!r} takes no {name.replace('_', ' ')}; leave the part out, "
                              f"or choose a pipeline that takes one: {', '.join(takers) or '(none on this server)'}")


def check_source_video(path: Path) -> int:
    """Decode every frame of an uploaded ``source_video``; returns the frame count.

    Raises :class:`ParamsError` naming ``source_video`` when FFmpeg cannot decode it or it has no video frames.
    """
    import av

    fix = "attach the take's movie file (MP4, MOV, MKV…) as the sequencer shows it"
    try:
        container = av.open(str(path))
    except (av.FFmpegError, ValueError) as exc:
        raise ParamsError(f"source_video: not a video FFmpeg can open ({_reason(exc)}); {fix}") from exc
    with container:
        if not container.streams.video:
            raise ParamsError(f"source_video: the file has no video stream; {fix}")
        try:
            frames = sum(1 for _ in container.decode(video=0))
        except (av.FFmpegError, ValueError) as exc:
            raise ParamsError(f"source_video: its frames do not decode ({_reason(exc)}); {fix}") from exc
    if frames == 0:
        raise ParamsError("source_video: the video has no frames; attach a take with at least one frame")
    return frames


def _reason(exc: Exception) -> str:
    """FFmpeg's reason without the file name (the path of the upload on the server is no business of the client)."""
    return getattr(exc, "strerror", None) or type(exc).__name__


def parse_client_job_id(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not CLIENT_JOB_ID.match(raw):
        raise ParamsError("client_job_id: 1-128 characters from A-Z a-z 0-9 . _ : -")
    return raw


def parse_priority(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise ParamsError(f"priority: must be an integer from -100 to 100; got {raw[:40]!r}") from exc
    if not -100 <= value <= 100:
        raise ParamsError(f"priority: must be from -100 to 100; got {value}")
    return value
