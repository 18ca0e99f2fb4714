"""The ``validate`` command: open every file of a cohort, check every value, label and split.

* :mod:`~polymodal.validation.validate`: :func:`validate_cohort` → :class:`ValidationReport`.
* :mod:`~polymodal.validation.leakage`: rows that appear in two splits (exact and near copies).
* :mod:`~polymodal.validation.report`: the report as rich tables, CSV and JSON.

Label checks per target kind live with the targets (:mod:`polymodal.data.label_checks`).
"""
