"""AMCT's ModelEvaluator: runs a model on batches stored as raw binary files
(docs/amct-reference.md#modelevaluator). The files are listed, checked and
read by the C++ core; this class only feeds them to torch."""

import numpy as np
import torch

from amct_pytorch import _amct
from amct_pytorch.api import _check_type
from amct_pytorch.common.auto_calibration import AutoCalibrationEvaluatorBase
from amct_pytorch.errors import AmctValueError


class ModelEvaluator(AutoCalibrationEvaluatorBase):
    """ModelEvaluator(data_dir, input_shape, data_types):

    - data_dir: one directory per input, ';'-separated ("data/in1;data/in2");
      each file is one batch, taken in file-name order;
    - input_shape: "name1:n,c,h,w;name2:n,l", one shape per input;
    - data_types: numpy dtype names, ';'-separated ("float32;int64").

    calibration() and evaluate() run the model on the batches and return
    None, as AMCT's do; for accuracy_based_auto_calibration, subclass it with
    an evaluate() that returns a metric and a metric_eval()."""

    def __init__(self, data_dir, input_shape, data_types):
        super().__init__()
        for name, value in (("data_dir", data_dir), ("input_shape", input_shape), ("data_types", data_types)):
            _check_type("ModelEvaluator", name, value, str)
        self.inputs = _amct.parse_bin_inputs(input_shape, data_dir, data_types)

    def calibration(self, model, batch_num=None):
        """Runs `model` on the first batch_num batches (all of them when None)."""
        self._run(model, batch_num, "calibration", "batch_num")

    def evaluate(self, model, iterations=None):
        """Runs `model` on the first `iterations` batches (all of them when None)."""
        self._run(model, iterations, "evaluate", "iterations")

    # Not through evaluate(): a subclass that overrides evaluate() with its
    # metric keeps this calibration.
    def _run(self, model, count, method, arg):
        if count is not None:
            _check_type(f"ModelEvaluator.{method}", arg, count, int)
            if count <= 0:
                raise AmctValueError(f"ModelEvaluator.{method}(): Invalid {arg} {count} has been given, "
                                     "should be greater than 0")
        files = _amct.bin_batch_files(self.inputs, -1 if count is None else count)
        model.eval()
        with torch.no_grad():
            for batch in zip(*files):
                model(*(self._tensor(path, spec) for path, spec in zip(batch, self.inputs)))

    @staticmethod
    def _tensor(path, spec):
        data = np.frombuffer(_amct.read_bin_batch(path, spec), dtype=spec.dtype).reshape(spec.dims)
        return torch.from_numpy(data.copy())
