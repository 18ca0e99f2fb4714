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
    serving = _Serving(predictor, inputs, allow, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await serving.close()

    app = FastAPI(title="polymodal", lifespan=lifespan)
    app.state.service, app.state.batcher = serving.service, serving.batcher
    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * 2**20))
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(PolymodalError, _polymodal_error)
    card = _model_card(predictor, inputs)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        waiting = serving.batcher.waiting
        return {"status": "ok", "device": str(predictor.device), "queued": waiting}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return card

    @app.get("/examples")
    async def examples_() -> list[dict[str, Any]]:
        return offered

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: Request) -> dict[str, Any]:
        return await serving.answer(await read_predict_request(request))

    mount_page(app, card)
    return app


class _Serving:
    """What the routes share: the model side, its batcher and worker thread, the folders."""

    def __init__(
        self,
        predictor: Predictor,
        inputs: ModelInputs,
        allow_dir: Path | None,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        self.inputs, self.allow_dir = inputs, allow_dir
        self.work = tempfile.TemporaryDirectory(prefix="polymodal-serve-")
        self.service = PredictionService(predictor, inputs, Path(self.work.name))
        # One thread runs every model call: the model is not shared between threads.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polymodal-model")
        self.batcher: MicroBatcher[PatientRow, dict] = MicroBatcher(
            self.service.predict, self.executor, max_batch=max_batch, max_wait_ms=max_wait_ms
        )

    async def answer(self, parsed: ParsedRequest) -> dict[str, Any]:
        """The answer to one request; its files are removed whatever happens."""
        files = RequestFiles(self.service.work_root, self.allow_dir)
        try:
            return await self._answer(parsed, files)
        finally:
            await run_in_threadpool(files.remove)
            await parsed.close()

    async def _answer(self, parsed: ParsedRequest, files: RequestFiles) -> dict[str, Any]:
        """Check, place the files, predict (batched), then the extras the request asked for."""
        body, service = parsed.body, self.service
        if body.explain:
            _check_task(body.task, service)
        ids, rows = await patient_rows(parsed, files, self.inputs)
        results = await self.batcher.submit(rows)
        loop = asyncio.get_running_loop()
        answers = [
            {key: value for key, value in result.items() if key != "warnings"} | {"id": ids[i]}
            for i, result in enumerate(results)
        ]
        if body.leave_one_out:
            without = await loop.run_in_executor(self.executor, service.leave_one_out, rows)
            for answer, table in zip(answers, without, strict=True):
                answer["without"] = table
        if body.explain:
            for answer, row in zip(answers, rows, strict=True):
                answer["explanation"] = await loop.run_in_executor(
                    self.executor, service.explain, row, body.task, body.top, answer["id"]
                )
        return {"predictions": answers, "warnings": request_warnings(results, rows, ids)}

    async def close(self) -> None:
        await self.batcher.stop()
        self.executor.shutdown(wait=True)
        self.work.cleanup()


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
