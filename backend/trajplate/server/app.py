"""The FastAPI app of the job API (DESIGN: job API). ``create_app(config)`` wires store, executor and service.

Routes (all under ``/v1``, documented in docs/api.md; the OpenAPI document is checked in as docs/openapi.json):
``GET /health``, ``GET /pipelines``, ``POST /jobs``, ``GET /jobs``, ``GET /jobs/{id}``, ``GET /jobs/{id}/events``
(Server-Sent Events), ``DELETE /jobs/{id}``, ``GET /jobs/{id}/video``, ``GET /jobs/{id}/metadata``,
``GET /jobs/{id}/log``. Errors are ``{"detail": "<field>: <what is wrong and how to fix it>"}``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from filelock import FileLock, Timeout
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from .. import __version__
from ..jobs.catalog import all_presets, installed_class
from ..jobs.runner import BUNDLE, LOG, METADATA, PARAMS, VIDEO
from ..jobs.service import JobService, JobView, QueueFull
from ..jobs.store import TERMINAL, JobRecord, JobStore
from ..params import GenerateParams
from ..presets import PresetError, load_presets, presets_dir
from ..shot import BundleError, load_shot
from ..tiny import is_built
from ..weights import weights_status
from .config import ConfigError, ServerConfig, is_loopback_host
from .security import GuardMiddleware
from .uploads import UploadError, discard, receive_upload
from .validation import (
    ParamsError,
    check_input_files,
    check_source_video,
    parse_client_job_id,
    parse_params,
    parse_priority,
)

# uvicorn's own server logger: its lines reach the `trajplate serve` output (the add-on's log panel) at --log-level.
log = logging.getLogger("uvicorn.error")

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="job id (32 hex digits)")]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    gpu: str | None
    queue_length: int
    running: int
    executor: Literal["embedded", "ray"]
    workers: list[dict[str, Any]]
    auth: bool
    tiny_fallback: bool


class PipelineInfo(BaseModel):
    id: str
    name: str
    description: str
    paper: str
    implemented: bool
    available: bool
    tiny_available: bool
    tiny_built: bool
    weights: dict[str, dict[str, Any]]
    licence: dict[str, Any]
    native: dict[str, Any]
    defaults: dict[str, Any]
    tiers: dict[str, Any]
    variants: dict[str, Any]
    default_variant: str | None
    requirements: list[str]
    time_map: str
    public_weights: bool
    unavailable_reason: str | None
    options_schema: dict[str, Any] | None
    input_files: list[str] = Field(
        description="files a job of this pipeline may attach beside the bundle (multipart parts of POST /v1/jobs), "
                    "e.g. source_video: a take to re-shoot instead of the shot's render")


def make_executor(config: ServerConfig):
    if config.executor == "ray":
        from ..jobs.ray_executor import RayExecutor

        return RayExecutor(config.data_dir, address=config.ray_address, budget_bytes=config.memory_budget_bytes)
    from ..jobs.embedded import EmbeddedExecutor

    return EmbeddedExecutor(config.data_dir, devices=config.devices, budget_bytes=config.memory_budget_bytes)


def pipeline_infos() -> list[PipelineInfo]:
    """What ``GET /v1/pipelines`` and ``trajplate pipelines`` show, sorted by id."""
    infos = []
    for pipeline_id, preset in sorted(all_presets().items()):
        cls, why = installed_class(pipeline_id)
        implemented = cls is not None
        weights = weights_status(preset)
        infos.append(PipelineInfo(
            **preset.model_dump(mode="json", include={
                "id", "name", "description", "paper", "licence", "native", "defaults", "tiers", "variants",
                "default_variant", "requirements", "time_map", "public_weights"}),
            implemented=implemented,
            available=implemented and all(w["cached"] for w in weights.values()),
            tiny_available=implemented,
            tiny_built=implemented and is_built(pipeline_id),
            weights=weights,
            unavailable_reason=why,
            options_schema=cls.Options.model_json_schema() if implemented else None,
            input_files=list(cls.input_files) if implemented else [],
        ))
    return infos


def load_catalog() -> None:
    """Import every pipeline package once (:func:`pipeline_infos`) and log what is installed. A broken plugin preset
    is logged here and not fatal (``GET /v1/pipelines`` then answers 500 until it is fixed); a broken built-in
    preset never gets here, :func:`create_app` refuses it.

    Run at startup, before the port opens: the packages import torch and diffusers, about 8 s on a 2-core machine,
    and a lazy first ``GET /v1/pipelines`` then outlived the add-on's 10 s request timeout.
    """
    start = time.perf_counter()
    try:
        infos = pipeline_infos()
    except PresetError as exc:
        log.error("pipeline catalog: %s", exc)
        return
    broken = [f"{i.id} ({i.unavailable_reason})" for i in infos if not i.implemented]
    log.info("pipeline catalog loaded in %.1f s: %s%s", time.perf_counter() - start,
             ", ".join(i.id for i in infos if i.implemented) or "none installed",
             f"; not usable: {', '.join(broken)}" if broken else "")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def create_app(config: ServerConfig) -> FastAPI:
    """The app for ``config`` (validated here). The service starts in the app's lifespan: it takes the data dir's
    lock (one server per data dir), recovers interrupted jobs and starts the executor; shutdown stops workers.

    Raises :class:`ConfigError` for bad settings and for a broken preset file (presets are read once per process,
    so a server started with one would answer every ``GET /v1/pipelines`` with a 500 until restarted)."""
    config.validate()
    try:
        load_presets()
    except PresetError as exc:
        raise ConfigError(f"preset folder {presets_dir()}: {exc}. Fix: correct that file (or point "
                          "$TRAJPLATE_PRESETS at a valid folder) and start again") from exc
    config.data_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = FileLock(str(config.data_dir / "server.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise RuntimeError(f"data dir {config.data_dir} is in use by another trajplate server") from exc
        store = JobStore(config.data_dir)
        service = JobService(store, make_executor(config), max_queue=config.max_queue, allow_tiny=config.allow_tiny)
        service.start()
        app.state.service = service
        try:
            await asyncio.to_thread(load_catalog)  # while the workers start; see load_catalog for why
            yield
        finally:
            service.shutdown()
            store.close()
            lock.release()

    app = FastAPI(title="TrajPlate job API", version=__version__, lifespan=lifespan,
                  description="Shot bundles in, reference plates out. See docs/api.md.")
    app.add_middleware(GuardMiddleware, token=config.token, loopback=is_loopback_host(config.host),
                       allowed_origins=config.allowed_origins)

    def service(request: Request) -> JobService:
        return request.app.state.service

    def job_or_404(request: Request, job_id: str) -> JobView:
        view = service(request).get(job_id)
        if view is None:
            raise HTTPException(404, f"job {job_id} not found")
        return view

    @app.get("/v1/health", response_model=Health, tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness, queue length, executor and its workers (device names)."""
        return {"status": "ok", "version": __version__, "auth": config.token is not None,
                "tiny_fallback": config.allow_tiny, **service(request).health()}

    @app.get("/v1/pipelines", response_model=list[PipelineInfo], tags=["service"])
    def pipelines() -> list[PipelineInfo]:
        """Every pipeline of presets/: weights in the local HF cache, licence, native size/frames/fps, options."""
        return pipeline_infos()

    @app.post(
        "/v1/jobs", status_code=201, response_model=JobView, tags=["jobs"],
        responses={200: {"model": JobView, "description": "the job already submitted with this client_job_id"},
                   403: {"description": "research-only pipeline; start the server with --accept-research-licences"},
                   409: {"description": "client_job_id reused with a different bundle, source video or params"},
                   413: {"description": "bundle and source video together larger than the upload limit"},
                   422: {"description": "invalid bundle, source video or params; the message names the field"},
                   503: {"description": "queue full; see Retry-After"}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["bundle", "params"], "properties": {
                "bundle": {"type": "string", "format": "binary", "description": "the shot bundle zip"},
                "source_video": {"type": "string", "format": "binary",
                                 "description": "optional take to re-shoot (any video FFmpeg decodes), for pipelines "
                                                "whose input_files list source_video"},
                "params": {"type": "string", "description": "JSON of GenerateParams"},
                "client_job_id": {"type": "string", "description": "idempotency key: a retry returns the same job"},
                "priority": {"type": "integer", "description": "-100..100, higher runs first (default 0)"},
            }}}}}},
    )
    async def submit(request: Request) -> JSONResponse:
        """Submit a job: multipart ``bundle`` (file) + ``params`` (JSON string of GenerateParams), optionally a
        ``source_video`` file for pipelines that take one (``input_files`` in ``GET /v1/pipelines``)."""
        svc = service(request)
        try:
            upload = await receive_upload(request, svc.store.uploads_dir(), config.max_upload_bytes)
        except UploadError as exc:
            return _error(exc.status, str(exc))
        try:
            params = parse_params(upload.fields.get("params"))
            licence = all_presets()[params.pipeline].licence
            if licence.research_only and not config.accept_research_licences:
                return _error(403, f"params.pipeline: {params.pipeline!r} is licensed for research only "
                                   f"({licence.adapter}). Fix: the server operator accepts that licence by starting "
                                   "`trajplate serve --accept-research-licences`")
            client_job_id = parse_client_job_id(upload.fields.get("client_job_id"))
            priority = parse_priority(upload.fields.get("priority"))
            inputs = {name: part for name, part in upload.files.items() if name != "bundle"}
            check_input_files(params.pipeline, list(inputs))
            input_files = {name: part.sha256 for name, part in inputs.items()}
            if client_job_id is not None:
                existing = svc.store.get_by_client_id(client_job_id)
                if existing is not None:
                    _check_retry(existing, upload.sha256, input_files, params)
                    return JSONResponse(svc.view(existing).model_dump(mode="json"), status_code=200)
            svc.check_capacity()
            await run_in_threadpool(load_shot, upload.bundle_path)
            if "source_video" in inputs:
                await run_in_threadpool(check_source_video, inputs["source_video"].path)
            job_id = uuid.uuid4().hex
            job_dir = svc.store.job_dir(job_id)
            job_dir.mkdir()
            upload.bundle_path.replace(job_dir / BUNDLE)
            for name, part in inputs.items():
                part.path.replace(job_dir / name)
            (job_dir / PARAMS).write_text(params.model_dump_json(indent=2), encoding="utf-8")
            record, created = svc.submit(job_id, pipeline=params.pipeline, params=params.model_dump(mode="json"),
                                         bundle_sha256=upload.sha256, input_files=input_files, priority=priority,
                                         client_job_id=client_job_id)
            if not created:  # a concurrent retry with the same client_job_id won the insert
                shutil.rmtree(job_dir, ignore_errors=True)
                _check_retry(record, upload.sha256, input_files, params)
            return JSONResponse(svc.get(record.id).model_dump(mode="json"), status_code=201 if created else 200)
        except ParamsError as exc:
            return _error(422, str(exc))
        except BundleError as exc:
            return _error(422, f"bundle: {exc}")
        except QueueFull as exc:
            return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})
        except _Conflict as exc:
            return _error(409, str(exc))
        finally:
            discard(upload)

    @app.get("/v1/jobs", response_model=list[JobView], tags=["jobs"])
    def list_jobs(request: Request,
                  state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[JobView]:
        """Jobs, newest first."""
        svc = service(request)
        return [svc.view(r) for r in svc.store.list(state=state, limit=limit)]

    @app.get("/v1/jobs/{job_id}", response_model=JobView, tags=["jobs"])
    def get_job(request: Request, job_id: JobId) -> JobView:
        """State, progress {stage, step, steps, eta_s}, error."""
        return job_or_404(request, job_id)

    @app.delete("/v1/jobs/{job_id}", response_model=JobView, tags=["jobs"])
    def cancel_job(request: Request, job_id: JobId) -> JobView:
        """Cancel: a queued job at once, a running one at its next denoising step (decoding is skipped)."""
        job_or_404(request, job_id)
        service(request).cancel(job_id)
        return job_or_404(request, job_id)

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"],
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "SSE: `event: job`, data = the JSON of GET /v1/jobs/{id}; ends when "
                                             "the job reaches a terminal state"}})
    async def job_events(request: Request, job_id: JobId) -> EventSourceResponse:
        """Live progress as Server-Sent Events; the first event is the current state."""
        svc = service(request)
        job_or_404(request, job_id)
        queue = svc.subscribe(job_id)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                view = svc.get(job_id)
                while True:
                    yield {"event": "job", "data": view.model_dump_json()}
                    if view.state in TERMINAL:
                        return
                    view = await queue.get()
            finally:
                svc.unsubscribe(job_id, queue)

        return EventSourceResponse(events(), ping=15)

    def result(request: Request, job_id: str, name: str, media_type: str) -> FileResponse:
        view = job_or_404(request, job_id)
        path = service(request).result_path(job_id, name)
        if path is None:
            raise HTTPException(409 if view.state not in TERMINAL else 404,
                                f"job {job_id} is {view.state}; {name} exists only for succeeded jobs")
        return FileResponse(path, media_type=media_type, filename=f"{job_id}-{name}")

    @app.get("/v1/jobs/{job_id}/video", tags=["jobs"], response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "not finished yet"}})
    def job_video(request: Request, job_id: JobId) -> FileResponse:
        """The take: H.264 MP4 at the pipeline's native fps (Range requests supported)."""
        return result(request, job_id, VIDEO, "video/mp4")

    @app.get("/v1/jobs/{job_id}/metadata", tags=["jobs"], response_class=FileResponse,
             responses={200: {"content": {"application/json": {}}}, 409: {"description": "not finished yet"}})
    def job_metadata(request: Request, job_id: JobId) -> FileResponse:
        """metadata.json: job id, pipeline, weights revisions, tiny flag, seed, steps, guidance, prompts, bundle
        sha256, fps, frame count, shot frame map, timings, score."""
        return result(request, job_id, METADATA, "application/json")

    @app.get("/v1/jobs/{job_id}/log", tags=["jobs"], response_class=PlainTextResponse)
    def job_log(request: Request, job_id: JobId) -> PlainTextResponse:
        """The job's log (stage transitions, errors with tracebacks)."""
        job_or_404(request, job_id)
        path = service(request).store.job_dir(job_id) / LOG
        return PlainTextResponse(path.read_text(encoding="utf-8") if path.is_file() else "")

    return app


class _Conflict(Exception):
    pass


def _check_retry(record: JobRecord, sha256: str, input_files: dict[str, str], params: GenerateParams) -> None:
    """A retry must repeat the same bundle, input files (by sha256) and params; raises _Conflict (409) otherwise."""
    if (record.bundle_sha256 != sha256 or record.input_files != input_files
            or record.params != params.model_dump(mode="json")):
        raise _Conflict(f"client_job_id: {record.client_job_id!r} was already used for job {record.id} with a "
                        "different bundle, source video or params; use a new client_job_id for a new job")
