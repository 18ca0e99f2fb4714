"""The model card every model folder carries: ``model_card.md`` and ``model_card.json``.

``polymodal fit`` writes it with the folder (:func:`~polymodal.model_card.folder.write_fit_card`):
model details, the intended use from the run config's ``card:`` section
(:mod:`polymodal.model_card.config`; ``TO FILL`` placeholders until written), the training
cohort's counts, prevalence and missing modalities, the training recipe, validation metrics and
subgroups with patient-grouped bootstrap CIs, calibration, known limitations and the TRIPOD+AI
items it covers. ``polymodal card MODEL`` adds the test split on every modality subset and per
subgroup (:mod:`polymodal.model_card.evidence`); ``polymodal report`` shows each model's card.

Nothing here is imported by the package's import: the run config reads only the ``card:``
section's model (:mod:`polymodal.model_card.config`).
"""
