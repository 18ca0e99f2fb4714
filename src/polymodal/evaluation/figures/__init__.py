"""The clinical figures of the report, drawn from kept predictions with matplotlib's Agg canvas.

One idea per file: ROC and precision–recall curves (:mod:`.roc_pr`), the reliability diagram
(:mod:`.calibration_plot`), the confusion matrix (:mod:`.confusion`), the decision curve
(:mod:`.decision_curve`), Kaplan–Meier curves by predicted risk group (:mod:`.survival_curves`)
and training curves from a run's ``metrics.csv`` (:mod:`.training_curves`). Each file computes
its numbers in one function (tested against scikit-learn or a formula) and draws them in
another; bands are percentile intervals of the patient-grouped bootstrap
(:func:`polymodal.evaluation.bootstrap.bootstrap_ci`). :mod:`.clinical` picks the figures each
target and modality subset gets, by asking the target kind what its predictions hold.
"""
