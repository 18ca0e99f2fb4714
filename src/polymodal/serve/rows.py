"""A request's patients as manifest rows: fields checked, files placed, ids kept apart.

Each row's id in the manifest is a key unique in the service (requests batched together may
repeat an id); the patient's own id is given back in the answer and in warnings.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from polymodal.serve.errors import RequestError
from polymodal.serve.files import RequestFiles
from polymodal.serve.inputs import ModelInputs, cell_text
from polymodal.serve.parsing import ParsedRequest
from polymodal.serve.service import PatientRow


async def patient_rows(
    parsed: ParsedRequest, files: RequestFiles, inputs: ModelInputs
) -> tuple[list[str], list[PatientRow]]:
    """The patients' ids (given, or their position) and rows.

    Raises:
        RequestError: a field the model does not read or that does not parse (422), a path
            outside the allowed folder (403); ``loc`` names it.
    """
    body = parsed.body
    patients = body.all_patients()
    where = (
        [("body", "patient")]
        if body.patient is not None
        else [("body", "patients", i) for i in range(len(patients))]
    )
    for patient, loc in zip(patients, where, strict=True):
        inputs.check_patient(patient, loc)
    for (index, column), _ in parsed.uploads.items():
        inputs.check_file_column(column, ("body", f"{index}/{column}"))
        if column in patients[index].files:
            raise RequestError(
                ("body", f"{index}/{column}"), f"{column!r} is both uploaded and named by path"
            )
    ids = [p.id if p.id is not None else str(i) for i, p in enumerate(patients)]
    rows = await run_in_threadpool(_place_files, parsed, files, inputs, where)
    return ids, rows


def _place_files(
    parsed: ParsedRequest,
    files: RequestFiles,
    inputs: ModelInputs,
    where: list[tuple[str | int, ...]],
) -> list[PatientRow]:
    """Rows with every file in the work folder, each read once by its kind's reader to check
    it (blocking file I/O: run in a thread)."""
    rows = []
    file_columns = inputs.file_columns
    for i, patient in enumerate(parsed.body.all_patients()):
        cells = {column: cell_text(value) for column, value in patient.fields.items()}
        for column, path in patient.files.items():
            template, loc = file_columns[column].path_template, (*where[i], "files", column)
            cells[column] = files.from_path(path, template, loc)
            inputs.check_readable(column, cells[column], files.resolve, loc, path)
        for (index, column), upload in parsed.uploads.items():
            if index == i:
                template, loc = file_columns[column].path_template, ("body", f"{index}/{column}")
                cells[column] = files.from_upload(upload.filename, upload.file, template, loc)
                shown = upload.filename or column
                inputs.check_readable(column, cells[column], files.resolve, loc, shown)
        rows.append(PatientRow(key=f"{files.token}-{i}", cells=cells))
    return rows


def request_warnings(results: list[dict], rows: list[PatientRow], ids: list[str]) -> list[str]:
    """The warnings about this request's rows, naming the patients by their own ids."""
    seen: dict[str, None] = {}
    for result in results:
        for message in result["warnings"]:
            for row, patient_id in zip(rows, ids, strict=True):
                message = message.replace(row.key, patient_id)
            seen.setdefault(message)
    return list(seen)
