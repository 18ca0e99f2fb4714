"""Ready cohorts: the synthetic demo cohorts and ``prepare`` for public datasets.

* :mod:`~polymodal.datasets.demo`: the single-task demo cohort (``polymodal demo-data``).
* :mod:`~polymodal.datasets.demo_multitask`: the multitask demo cohort (``--multitask``).
* :mod:`~polymodal.datasets.prepare`: AdrenalMNIST3D and IU X-ray → manifest + spec, and the
  marker that guards the folders these commands write into.

Kept outside :mod:`polymodal.data`, which holds only the cohort → sample pipeline.
"""
