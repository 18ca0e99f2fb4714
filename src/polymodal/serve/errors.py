"""What a request did wrong, as HTTP answers: the field it names and the status it gets.

Every error body has FastAPI's validation shape, ``{"detail": [{"loc": [...], "msg": ...,
"type": ...}]}``, so a client reads one format whether pydantic or the service refused the
request.
"""

from __future__ import annotations

from collections.abc import Sequence


class RequestError(Exception):
    """A request the service refuses; ``loc`` names the field (e.g. ``patients.0.fields.age``)."""

    status_code = 422
    error_type = "value_error"

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message

    def body(self) -> dict:
        """The JSON body of the answer."""
        return {"detail": [{"loc": list(self.loc), "msg": self.message, "type": self.error_type}]}


class PathOutsideAllowed(RequestError):
    """A file path that lies outside the allowed folder (403): it is never opened."""

    status_code = 403
    error_type = "path_not_allowed"


class UploadTooLarge(RequestError):
    """A request body over the upload limit (413)."""

    status_code = 413
    error_type = "too_large"


class UnsupportedBody(RequestError):
    """A body that is neither JSON nor a multipart form (415)."""

    status_code = 415
    error_type = "unsupported_media_type"
