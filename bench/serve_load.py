"""Load test of ``polymodal serve`` on loopback: throughput and latency, one row per call
against dynamic batching, with concurrent clients bounded in count and time.

A tiny model is fitted on a small demo cohort (or ``--model`` with ``--examples`` is served);
the app runs in this process under uvicorn on a free loopback port, and ``--clients``
concurrent clients (httpx, asyncio) send single-patient ``POST /predict`` requests, the example
patients in turn (files named by path inside the cohort folder), until ``--requests`` requests
are answered or ``--seconds`` pass. Each setting is measured in the same run, on the same
warm model:

* ``batch 1``: ``max_batch=1``: every request is its own model call;
* ``batched``: ``max_batch=--batch``, ``max_wait_ms=--wait-ms``: concurrent requests share
  calls.

Reports requests/s, p50 and p99 latency (ms) and the mean rows per model call.

Usage::

    python bench/serve_load.py [--clients 16] [--requests 400] [--seconds 60] [--device auto]
        [--model RUN/model --examples COHORT/manifest.csv] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from _common import load_average, machine, table, write_report
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.devices import resolve_device
from polymodal.predictor import Predictor
from polymodal.runtime import setup_process
from polymodal.serve.app import create_app
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

TINY = [
    "model.core=synergy",
    "model.dim=32",
    "model.core_options={num_latents: 8, depth: 1}",
    "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet}}",
    "model.encoders.ct={options: {patch_size: 8, depth: 1}}",
    "train.max_epochs=1",
    "train.batch_size=32",
]


def tiny_model(folder: Path) -> tuple[Path, Path]:
    """(model folder, manifest) of a 1-epoch tiny model on a 200-row demo cohort."""
    spec = make_demo_cohort(folder / "cohort", n=200, seed=0, image_size=32, volume_size=16)
    fit(load_spec(spec), folder / "run", load_run_config(None, TINY), progress=False)
    return folder / "run" / "model", folder / "cohort" / "manifest.csv"


def serving(app) -> tuple[uvicorn.Server, str]:
    """``app`` under uvicorn on a free loopback port (a daemon thread); its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


async def load(base: str, patients: list[dict], clients: int, requests: int, seconds: float):
    """Latencies (s) of the answered requests, and the wall time they took."""
    latencies: list[float] = []
    sent = 0
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < stop:
            patient = patients[sent % len(patients)]
            sent += 1
            started = time.perf_counter()
            answer = await http.post("/predict", json={"patient": patient})
            answer.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await http.post("/predict", json={"patient": patients[0]})  # warm
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - started


def measure(predictor, args, examples: Path, max_batch: int, wait_ms: float) -> dict:
    app = create_app(
        predictor,
        allow_dir=examples.parent,
        examples=examples,
        max_batch=max_batch,
        max_wait_ms=wait_ms,
    )
    server, base = serving(app)
    try:
        patients = httpx.get(f"{base}/examples").json()
        calls_before = app.state.service.calls
        latencies, wall = asyncio.run(
            load(base, patients, args.clients, args.requests, args.seconds)
        )
        calls = app.state.service.calls - calls_before - 1  # less the warm-up call
    finally:
        server.should_exit = True
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "per_s": len(latencies) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "rows_per_call": len(latencies) / max(calls, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--examples", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    setup_process()
    with tempfile.TemporaryDirectory() as scratch:
        model, examples = (args.model, args.examples) if args.model else tiny_model(Path(scratch))
        predictor = Predictor.load(model, device=resolve_device(args.device), batch_size=args.batch)
        rows = []
        for name, max_batch, wait in (("batch 1", 1, 0.0), ("batched", args.batch, args.wait_ms)):
            result = measure(predictor, args, examples, max_batch, wait)
            rows.append(
                [
                    name,
                    str(predictor.device),
                    result["requests"],
                    f"{result['per_s']:.1f}",
                    f"{result['p50']:.0f}",
                    f"{result['p99']:.0f}",
                    f"{result['rows_per_call']:.1f}",
                ]
            )
            print(rows[-1], flush=True)
    lines = [
        "# polymodal serve: load test on loopback",
        "",
        f"Machine: {machine()}; load average {load_average():.1f}.",
        f"{args.clients} concurrent clients, one patient per request (all five modalities as the "
        f"demo rows have them), at most {args.requests} requests or {args.seconds:g} s per "
        f"setting; batched: up to {args.batch} rows per call, {args.wait_ms:g} ms wait.",
        "",
        *table(
            ["setting", "device", "requests", "requests/s", "p50 ms", "p99 ms", "rows per call"],
            rows,
            "llrrrrr",
        ),
    ]
    print(write_report(args.out / "serve_load.md", lines))


if __name__ == "__main__":
    main()
