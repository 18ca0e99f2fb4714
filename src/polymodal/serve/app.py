"""The HTTP service of a model folder: ``create_app(predictor, ...)`` returns a FastAPI app.

Endpoints: ``POST /predict`` (one patient or a batch, see :mod:`polymodal.serve.schemas`),
``GET /health``, ``GET /model`` (what ``polymodal inspect`` shows, plus the inputs a patient
may carry), ``GET /examples`` (patients offered on the page) and ``GET /`` (the page).
Model work runs on one worker thread, concurrent predictions in batches
(:mod:`polymodal.serve.batching`).
"""

from __future__ import annotations

import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from polymodal.errors import PolymodalError
from polymodal.predictor import Predictor
from polymodal.serve.batching import MicroBatcher
from polymodal.serve.errors import RequestError
from polymodal.serve.examples import example_patients
from polymodal.serve.files import RequestFiles
from polymodal.serve.inputs import ModelInputs
from polymodal.serve.page import mount_page
from polymodal.serve.parsing import ParsedRequest, read_predict_request
from polymodal.serve.rows import patient_rows, request_warnings
from polymodal.serve.schemas import PredictResponse
from polymodal.serve.service import PatientRow, PredictionService


def create_app(
    predictor: Predictor,
    *,
    allow_dir: Path | str | None = None,
    max_upload_mb: float = 64,
    examples: Path | str | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
) -> FastAPI:
    """The service of ``predictor``'s model.

    Args:
        allow_dir: the only folder whose files a request may name by path (None: uploads only).
        max_upload_mb: limit on a request body (uploads included): 413 beyond it.
        examples: a manifest whose rows the page offers as patients (files inside ``allow_dir``).
        max_batch, max_wait_ms: dynamic batching: rows per model call, and how long the first
            request waits for others.
    """
    from polymodal.serve.size_limit import BodySizeLimit

    allow = None if allow_dir is None else Path(allow_dir).expanduser().resolve()
    inputs = ModelInputs.from_spec(predictor.loaded.spec, predictor.modalities)
    offered = [] if examples is None else example_patients(Path(examples), inputs, allow)
    work = tempfile.TemporaryDirectory(prefix="polymodal-serve-")
    service = PredictionService(predictor, inputs, Path(work.name))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polymodal-model")
    batcher: MicroBatcher[PatientRow, dict] = MicroBatcher(
        service.predict,
        executor,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.stop()
        executor.shutdown(wait=True)
        work.cleanup()

    app = FastAPI(title="polymodal", lifespan=lifespan)
    app.state.service, app.state.batcher = service, batcher
    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * 2**20))
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(PolymodalError, _polymodal_error)
    card = _model_card(predictor, inputs)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "device": str(predictor.device), "queued": batcher.waiting}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return card

    @app.get("/examples")
    async def examples_() -> list[dict[str, Any]]:
        return offered

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: Request) -> dict[str, Any]:
        parsed = await read_predict_request(request)
        files = RequestFiles(service.work_root, allow)
        try:
            return await _answer(parsed, files, inputs, service, batcher, executor)
        finally:
            await run_in_threadpool(files.remove)
            await parsed.close()

    mount_page(app, card)
    return app


async def _answer(
    parsed: ParsedRequest,
    files: RequestFiles,
    inputs: ModelInputs,
    service: PredictionService,
    batcher: MicroBatcher,
    executor: ThreadPoolExecutor,
) -> dict[str, Any]:
    """Check, place the files, predict (batched), then the extras the request asked for."""
    body = parsed.body
    if body.explain:
        _check_task(body.task, service)
    ids, rows = await patient_rows(parsed, files, inputs)
    results = await batcher.submit(rows)
    loop = asyncio.get_running_loop()
    answers = [
        {key: value for key, value in result.items() if key != "warnings"} | {"id": ids[i]}
        for i, result in enumerate(results)
    ]
    if body.leave_one_out:
        without = await loop.run_in_executor(executor, service.leave_one_out, rows)
        for answer, table in zip(answers, without, strict=True):
            answer["without"] = table
    if body.explain:
        for answer, row in zip(answers, rows, strict=True):
            answer["explanation"] = await loop.run_in_executor(
                executor, service.explain, row, body.task, body.top, answer["id"]
            )
    return {"predictions": answers, "warnings": request_warnings(results, rows, ids)}


def _check_task(task: str | None, service: PredictionService) -> None:
    from polymodal.explain import resolve_task

    try:
        resolve_task(task, service.target_infos)
    except PolymodalError as err:
        raise RequestError(("body", "task"), str(err)) from None


def _model_card(predictor: Predictor, inputs: ModelInputs) -> dict[str, Any]:
    """What ``polymodal inspect`` shows, the folder by name only, and the patient's inputs."""
    from polymodal.model_inventory import model_inventory

    card = model_inventory(predictor.loaded.folder)
    card["folder"] = Path(predictor.loaded.folder).name
    card["device"] = str(predictor.device)
    card["inputs"] = inputs.describe()
    return card


async def _request_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestError)
    return JSONResponse(err.body(), status_code=err.status_code)


async def _polymodal_error(request: Request, err: Exception) -> JSONResponse:
    """The model side refused the rows (e.g. a non-finite output): its message, 422."""
    body = {"detail": [{"loc": ["body"], "msg": str(err), "type": "model_error"}]}
    return JSONResponse(body, status_code=422)
