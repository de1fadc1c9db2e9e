"""The evaluator protocol of accuracy_based_auto_calibration, importable from
where AMCT's documentation imports it:

    from amct_pytorch.common.auto_calibration import AutoCalibrationEvaluatorBase
"""


class AutoCalibrationEvaluatorBase:
    """Subclass it and implement the three methods; accuracy_based_auto_calibration
    calls them (docs/amct-reference.md#accuracy_based_auto_calibration)."""

    def calibration(self, model):
        """Runs the calibration model `model` on at least batch_num batches
        (the config's batch_num) of calibration data."""
        raise NotImplementedError("AutoCalibrationEvaluatorBase.calibration(model) must be implemented")

    def evaluate(self, model):
        """Returns the metric of `model` (an nn.Module: the float model or a
        fake-quant one) on the evaluation data, e.g. top-1 accuracy."""
        raise NotImplementedError("AutoCalibrationEvaluatorBase.evaluate(model) must be implemented")

    def metric_eval(self, original_metric, new_metric):
        """Returns (satisfied, loss): whether `new_metric` is close enough to
        `original_metric`, and the loss between them as a number."""
        raise NotImplementedError("AutoCalibrationEvaluatorBase.metric_eval(original_metric, new_metric) "
                                  "must be implemented")
