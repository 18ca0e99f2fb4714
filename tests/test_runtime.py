"""Threads per process and the glibc allocator setting (polymodal.runtime)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from polymodal import runtime
from polymodal.errors import PolymodalError


def test_threads_split_the_cores_between_the_process_and_its_workers(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    assert runtime.choose_num_threads(0, cores=8)[0] == 8
    assert runtime.choose_num_threads(1, cores=8)[0] == 4
    assert runtime.choose_num_threads(3, cores=8)[0] == 2
    assert runtime.choose_num_threads(2, cores=2)[0] == 1  # never 0


def test_config_wins_over_environment_which_wins_over_cores(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.choose_num_threads(0, cores=16) == (3, runtime.THREADS_ENV)
    assert runtime.choose_num_threads(0, requested=5, cores=16) == (5, "train.num_threads")
    monkeypatch.setenv(runtime.THREADS_ENV, "many")
    with pytest.raises(PolymodalError, match="POLYMODAL_NUM_THREADS"):
        runtime.choose_num_threads(0, cores=16)


def test_configure_threads_sets_torch(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        assert runtime.configure_threads(0, requested=1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_worker_init_leaves_one_thread():
    before = torch.get_num_threads()
    try:
        runtime.worker_init(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize(("env", "expected"), [("1", "True"), ("0", "False")])
def test_allocator_buffers_kept_unless_turned_off(env, expected):
    # A fresh process: the setting is made once per process.
    code = "from polymodal.runtime import keep_allocator_buffers as k; print(k(), k())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={runtime.KEEP_BUFFERS_ENV: env, "PATH": ""},
    ).stdout.split()
    assert out == [expected, expected]


def test_ddp_ranks_on_one_machine_share_its_cores(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    # Two CPU ranks on 2 cores each took 2 threads (4 threads on 2 cores): each gets 1 now.
    assert runtime.choose_num_threads(0, cores=2, processes=2)[0] == 1
    assert runtime.choose_num_threads(1, cores=16, processes=2)[0] == 4
    assert runtime.choose_num_threads(0, cores=16, processes=4)[0] == 4
    assert runtime.choose_num_threads(3, cores=4, processes=4)[0] == 1  # never 0
    assert "2 processes on this machine" in runtime.choose_num_threads(0, cores=2, processes=2)[1]
