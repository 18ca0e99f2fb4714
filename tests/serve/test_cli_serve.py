"""``polymodal serve MODEL``: the command starts the service on loopback and answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from polymodal.cli import main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_health_examples_and_predict(model_dir: Path, cohort_dir: Path) -> None:
    port = _free_port()
    command = [
        sys.executable, "-m", "polymodal", "serve", str(model_dir), "--port", str(port),
        "--device", "cpu", "--examples", str(cohort_dir / "manifest.csv"),
    ]  # fmt: skip
    env = {**os.environ, "POLYMODAL_NUM_THREADS": "1"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the service did not start within 120 s"
                time.sleep(0.2)
        assert health.json()["status"] == "ok" and health.json()["device"] == "cpu"
        example = httpx.get(f"{base}/examples").json()[0]
        answer = httpx.post(f"{base}/predict", json={"patient": example}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["id"] == example["id"]
        # --examples allowed the examples' folder, and only it
        outside = {"patient": {"files": {"lesion_image": "../outside.png"}}}
        assert httpx.post(f"{base}/predict", json=outside).status_code == 403
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_bad_device_is_a_message_and_exit_2(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["polymodal", "serve", str(model_dir), "--device", "gpu"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "--device 'gpu' is not a device" in capsys.readouterr().err
