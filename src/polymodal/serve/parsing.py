"""Reading a ``POST /predict`` body: JSON, or a multipart form that carries uploads.

JSON: the :class:`~polymodal.serve.schemas.PredictRequest` itself. Multipart: its JSON in the
form field ``request``, and one file part per uploaded file, named by its manifest column
(``lesion_image``: the first patient's) or ``N/COLUMN`` (patient ``N``, from 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from polymodal.serve.errors import RequestError, UnsupportedBody
from polymodal.serve.schemas import MAX_PATIENTS, PredictRequest

REQUEST_FIELD = "request"


@dataclass
class ParsedRequest:
    """The validated request, its uploads by (patient position, column), and the form to close."""

    body: PredictRequest
    uploads: dict[tuple[int, str], UploadFile] = field(default_factory=dict)
    form: FormData | None = None

    async def close(self) -> None:
        if self.form is not None:
            await self.form.close()


async def read_predict_request(request: Request) -> ParsedRequest:
    """Parse and validate a predict request.

    Raises:
        RequestValidationError: 422, the body does not fit the schema (``loc`` names the field).
        RequestError: 422 for JSON that does not parse or a file part that names no patient;
            :class:`UnsupportedBody` (415) for another content type.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=4 * MAX_PATIENTS, max_fields=16)
        try:
            body = _validated(_json_of(await _request_field(form)))
            uploads = _uploads(form, len(body.all_patients()))
        except BaseException:
            await form.close()
            raise
        return ParsedRequest(body, uploads, form)
    if content_type in ("application/json", ""):
        return ParsedRequest(_validated(_json_of(await request.body())))
    raise UnsupportedBody(
        ("header", "content-type"),
        f"{content_type!r} is not accepted: send application/json, or multipart/form-data "
        "with uploads",
    )


def _json_of(raw: bytes | str) -> object:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(("body",), f"the body is not valid JSON ({err})") from None


async def _request_field(form: FormData) -> bytes | str:
    value = form.get(REQUEST_FIELD)
    if value is None:
        raise RequestError(
            ("body", REQUEST_FIELD),
            f"a multipart request carries its JSON in the form field {REQUEST_FIELD!r}",
        )
    return await value.read() if isinstance(value, UploadFile) else value


def _validated(data: object) -> PredictRequest:
    try:
        return PredictRequest.model_validate(data)
    except ValidationError as err:
        # loc, msg and type only: the input may be a whole body, ctx an exception object.
        errors = [
            {"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()
        ]
        raise RequestValidationError(errors) from None


def _uploads(form: FormData, n_patients: int) -> dict[tuple[int, str], UploadFile]:
    """File parts by (patient position, column)."""
    found: dict[tuple[int, str], UploadFile] = {}
    for name, value in form.multi_items():
        if name == REQUEST_FIELD:
            continue
        loc = ("body", name)
        if not isinstance(value, UploadFile):
            raise RequestError(
                loc, f"unknown form field {name!r}: only {REQUEST_FIELD!r} and files"
            )
        position, sep, column = name.partition("/")
        index = int(position) if sep and position.isdigit() else 0
        column = column if sep else name
        if index >= n_patients:
            raise RequestError(loc, f"names patient {index}; the request has {n_patients}")
        if (index, column) in found:
            raise RequestError(loc, "the same file column is uploaded twice")
        found[(index, column)] = value
    return found
