"""Learning the preprocessing state from the training rows of a cohort (used by
:meth:`polymodal.data.preprocessing.Preprocessor.fit`).

Each kind fits itself on the training rows only: a modality kind with
:meth:`polymodal.modalities.ModalityKind.fit`, a target kind with its own ``fit``. What stays
here is how a row's unusable value or file is recorded, imported from
:mod:`polymodal.data.issues` by the code that used to find it here.
"""

from __future__ import annotations

from polymodal.data.issues import DataIssue, OnError, read_or_record

__all__ = ["DataIssue", "OnError", "read_or_record"]
