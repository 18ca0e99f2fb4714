"""Concurrent requests are gathered into one Predictor call; a batch never passes max_batch."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from polymodal.predictor import Predictor
from polymodal.serve.batching import MicroBatcher
from serve.conftest import make_app


def test_two_concurrent_requests_make_one_predictor_call(
    predictor: Predictor, cohort_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(predictor, cohort_dir, max_wait_ms=500)
    calls = []  # rows per Predictor call
    original = predictor.predict_manifest

    def counted(path, **options):
        calls.append(len(pd.read_csv(path)))
        return original(path, **options)

    monkeypatch.setattr(predictor, "predict_manifest", counted)

    async def two_clients() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            one = {"patient": {"id": "a", "fields": {"age": "61", "site": "clinic_of_a"}}}
            two = {"patients": [{"id": "b", "fields": {"age": "40"}}, {"id": "c"}]}
            return await asyncio.gather(
                client.post("/predict", json=one), client.post("/predict", json=two)
            )

    first, second = asyncio.run(two_clients())
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert calls == [3]  # one call over both requests' rows
    assert [p["id"] for p in first.json()["predictions"]] == ["a"]
    assert [p["id"] for p in second.json()["predictions"]] == ["b", "c"]
    # A value of one request is never shown to the other, though both ran in one call.
    assert any("'clinic_of_a'" in w for w in first.json()["warnings"])
    assert not any("clinic_of_a" in w for w in second.json()["warnings"])


def test_a_full_batch_runs_at_once_and_the_rest_waits_for_the_next() -> None:
    seen: list[list[int]] = []
    lock = threading.Lock()

    def run(items: list[int]) -> list[int]:
        with lock:
            seen.append(items)
        return [i * 10 for i in items]

    async def main() -> list[list[int]]:
        batcher = MicroBatcher(run, ThreadPoolExecutor(1), max_batch=3, max_wait_ms=200)
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(4)))
        await batcher.stop()
        assert time.perf_counter() - started < 5
        return results

    assert asyncio.run(main()) == [[0], [10], [20], [30]]
    assert seen == [[0, 1, 2], [3]]


def test_an_error_reaches_every_request_of_its_batch() -> None:
    def run(items: list[int]) -> list[int]:
        raise ValueError("model broke")

    async def main() -> list:
        batcher = MicroBatcher(run, ThreadPoolExecutor(1), max_batch=8, max_wait_ms=50)
        results = await asyncio.gather(
            batcher.submit([1]), batcher.submit([2]), return_exceptions=True
        )
        await batcher.stop()
        return results

    assert [str(r) for r in asyncio.run(main())] == ["model broke", "model broke"]
