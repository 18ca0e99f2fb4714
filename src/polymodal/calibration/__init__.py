"""Calibration and uncertainty of a trained model, fitted on the validation split after ``fit``.

* :mod:`~polymodal.calibration.recalibration`: temperature, Platt or isotonic recalibration of
  the probabilities (``calibration:`` in the run config), applied by the predictor.
* :mod:`~polymodal.calibration.conformal`: split-conformal prediction sets and intervals with a
  chosen coverage (``conformal:``), added to the predictor's output and scored by ``evaluate``.
* :mod:`~polymodal.calibration.folder_files`: how both are kept in the model folder (JSON,
  covered by its checksums).
"""

from polymodal.calibration.conformal import ConformalConfig, ConformalPrediction
from polymodal.calibration.recalibration import CalibrationConfig, Recalibration

__all__ = ["CalibrationConfig", "ConformalConfig", "ConformalPrediction", "Recalibration"]
