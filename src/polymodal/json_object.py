"""Reading a JSON object from a model folder's file, with one message per way it can be wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polymodal.errors import ModelError


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        ModelError: the file is not JSON or holds no object; the message names the file and
            ends with ``fix`` (what the user can do).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object; {fix}")
    return data
