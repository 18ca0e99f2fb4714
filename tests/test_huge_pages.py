"""The command line asks torch's CPU allocator for huge pages before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from polymodal.huge_pages import ENV, prefer_huge_pages

CLI = "import os, polymodal.cli, torch; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
MODULE = "import os, polymodal.huge_pages; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"


def _env_seen(probe: str, **env: str) -> str:
    clean = {
        k: v for k, v in os.environ.items() if k not in (ENV, "POLYMODAL_KEEP_ALLOCATOR_BUFFERS")
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_command_line_sets_huge_pages_before_torch() -> None:
    assert _env_seen(CLI) == "1"


@pytest.mark.parametrize(
    ("env", "seen"),
    [
        ({ENV: "0"}, "0"),  # the user's own setting wins
        ({"POLYMODAL_KEEP_ALLOCATOR_BUFFERS": "0"}, "None"),  # the allocator switch turns it off
    ],
)
def test_the_users_settings_win(env: dict, seen: str) -> None:
    assert _env_seen(MODULE, **env) == seen


def test_too_late_once_torch_is_imported() -> None:
    import torch  # noqa: F401

    assert prefer_huge_pages() is False
