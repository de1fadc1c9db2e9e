"""accuracy_based_auto_calibration (docs/amct-reference.md#accuracy_based_auto_calibration).

This module drives torch: it runs quantize_model and the user's evaluator,
builds the fake-quant and probe models, and reports every result to the C++
core, which measures the per-layer sensitivity, ranks the layers, runs AMCT's
binary-search rollback and writes every file but the models (save_model's).
"""

import copy
import datetime
import logging
import os
import shutil
import tempfile

import torch
from torch import nn

from amct_pytorch import _amct
from amct_pytorch.api import _check_type, quantize_for_calibration, save_model
from amct_pytorch.calibration import without_calibration
from amct_pytorch.module_tools import set_submodule
from amct_pytorch.common.auto_calibration import AutoCalibrationEvaluatorBase
from amct_pytorch.errors import AmctTypeError, AmctValueError
from amct_pytorch.export import as_input_tuple, check_export_settings, release_export
from amct_pytorch.fake_quant import SensitivityProbe, fake_quant_layer
from amct_pytorch.progress import Progress

logger = logging.getLogger("amct_pytorch")

_FUNC = "accuracy_based_auto_calibration"
# AMCT writes the search history under the working directory.
_HISTORY_DIR = "amct_log"
_HISTORY_FILE = "accuracy_based_auto_calibration_record.json"


def accuracy_based_auto_calibration(model, model_evaluator, config_file, record_file, save_dir, input_data,
                                    input_names=None, output_names=None, dynamic_axes=None, strategy="BinarySearch",
                                    sensitivity="CosineSimilarity"):
    """Quantizes `model` with the layers most sensitive to quantization rolled
    back to float until model_evaluator.metric_eval accepts the fake-quant
    model's metric. Writes the deploy, fake-quant and QDQ models at the
    save_dir prefix, record_file, and beside the models the final config, the
    sensitivity ranking (JSON and a text table) and one config per trial;
    the search history goes to ./amct_log/. config_file is only read.
    Returns None, as AMCT's does."""
    _check_type(_FUNC, "model", model, torch.nn.Module)
    _check_type(_FUNC, "config_file", config_file, str)
    _check_type(_FUNC, "record_file", record_file, str)
    _check_type(_FUNC, "save_dir", save_dir, str)
    _check_type(_FUNC, "input_names", input_names, list, allow_none=True)
    _check_type(_FUNC, "output_names", output_names, list, allow_none=True)
    _check_type(_FUNC, "dynamic_axes", dynamic_axes, dict, allow_none=True)
    if not (isinstance(strategy, str) and strategy == "BinarySearch"):
        raise AmctValueError(f"{_FUNC}(): strategy must be 'BinarySearch' (the strategy amct implements), "
                             f"got {strategy!r}")
    if not (isinstance(sensitivity, str) and sensitivity == "CosineSimilarity"):
        raise AmctValueError(f"{_FUNC}(): sensitivity must be 'CosineSimilarity' (the measure amct implements), "
                             f"got {sensitivity!r}")
    if not os.path.isfile(config_file):
        raise AmctValueError(f"{_FUNC}(): config_file: Can not find the config_file at '{config_file}'")
    if not isinstance(model_evaluator, AutoCalibrationEvaluatorBase):
        raise AmctTypeError(f"{_FUNC}(): model_evaluator must be an instance of a subclass of "
                            f"AutoCalibrationEvaluatorBase (amct_pytorch.common.auto_calibration), "
                            f"got {type(model_evaluator).__name__}")
    _amct.check_output_file_name(record_file, "record_file")
    for kind in ("deploy", "fake_quant", "qdq"):
        _amct.output_model_path(save_dir, kind)  # checks the prefix
    as_input_tuple(input_data)
    check_export_settings(input_names, output_names, dynamic_axes)

    directory = os.path.dirname(save_dir) or "."
    os.makedirs(directory, exist_ok=True)
    stamp = datetime.datetime.now(tz=datetime.timezone(datetime.timedelta(hours=8))).strftime("%Y%m%d%H%M%S%f")
    temp_dir = tempfile.mkdtemp(prefix=f"temp{stamp}", dir=directory)
    try:
        search = _AutoCalibration(model, model_evaluator, config_file, input_data, input_names, output_names,
                                  dynamic_axes, temp_dir).run(directory)
        _write_results(search, config_file, record_file, save_dir, directory, temp_dir)
    finally:
        release_export(model)  # the trials' export
        shutil.rmtree(temp_dir, ignore_errors=True)


class _AutoCalibration:
    """One call: the trials share the temporary modified ONNX and record."""

    def __init__(self, model, evaluator, config_file, input_data, input_names, output_names, dynamic_axes, temp_dir):
        self.model = model
        self.evaluator = evaluator
        self.config_file = config_file
        self.input_data = input_data
        self.export = (input_names, output_names, dynamic_axes)
        self.modified_onnx = os.path.join(temp_dir, "modified_model.onnx")
        self.record = os.path.join(temp_dir, "record.txt")

    def run(self, directory):
        original = self.evaluator.evaluate(self.model)
        logger.info("auto calibration: metric of the float model: %s", original)
        original_eval = self._metric_eval(original, original)
        if not original_eval[0]:
            raise AmctValueError(
                "Compare between original_accuracy and original_accuracy can not satisfy the acc requirement, "
                "please check the metric_eval() function: model_evaluator.metric_eval(m, m) returned "
                f"{original_eval} for the float model's metric m = {original!r}")

        calibration_model, fake_quant_model, result, quants = self._calibrate(self.config_file)
        global_metric = self.evaluator.evaluate(fake_quant_model)
        global_eval = self._metric_eval(original, global_metric)
        logger.info("auto calibration: every layer quantized: metric %s, %s", global_metric,
                    "satisfied" if global_eval[0] else "not satisfied")
        scores = self._sensitivity(calibration_model, result, quants)

        search = _amct.RollbackSearch(scores, global_eval, original_eval)
        for layer, similarity in search.ranking:
            logger.info("auto calibration: similarity of %s: %.6f", layer, similarity)
        with Progress("amct: auto calibration trials", total=search.max_trials) as progress:
            while search.searching:
                trial = search.trials + 1
                rolled_back = search.rolled_back
                config = os.path.join(directory, f"accuracy_based_auto_calibration_trial{trial}_config.json")
                search.write_trial_config(config, self.config_file)
                logger.info("auto calibration trial %d of at most %d: rolling back %d of %d layers (%s); config %s",
                            trial, search.max_trials, len(rolled_back), len(search.ranking), ", ".join(rolled_back),
                            config)
                progress.update(trial - 1, note=f"trial {trial}: {len(rolled_back)} layers rolled back")
                _, fake_quant_model, _, _ = self._calibrate(config)
                metric = self.evaluator.evaluate(fake_quant_model)
                satisfied, loss = self._metric_eval(original, metric)
                search.report(satisfied, loss)
                logger.info("auto calibration trial %d: metric %s, loss %s, %s", trial, metric, loss,
                            "satisfied" if satisfied else "not satisfied")
                progress.update(trial, note=f"trial {trial}: metric {metric}, "
                                            f"{'satisfied' if satisfied else 'not satisfied'}")
        return search

    def _metric_eval(self, original, new):
        result = self.evaluator.metric_eval(original, new)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AmctTypeError(f"model_evaluator.metric_eval() must return (satisfied, loss), got {result!r}")
        satisfied, loss = result
        try:
            loss = float(loss)
        except (TypeError, ValueError) as error:
            raise AmctTypeError(f"model_evaluator.metric_eval() returned the loss {loss!r}, which is not a number")\
                from error
        return bool(satisfied), loss

    def _calibrate(self, config_file):
        """quantize_model + the evaluator's calibration; returns the calibrated
        model (its wrappers removed), the fake-quant model built from a copy of
        it, the core's result and the layers' fake-quant factors."""
        calibration_model, result = quantize_for_calibration(config_file, self.modified_onnx, self.record, self.model,
                                                             self.input_data, *self.export, release_export=False)
        # The fake-quant layer and the sensitivity probe handle layers with
        # one input and one output tensor; an RNN has states besides.
        recurrent = [layer["name"] for layer in result["layers"] if layer["recurrent_weight"] is not None]
        if recurrent:
            raise AmctValueError(f"{_FUNC}(): layer '{recurrent[0]}' is an LSTM/GRU, which auto calibration does not "
                                 f"support; set its quant_enable to false in config file '{config_file}', or quantize "
                                 "the model with quantize_model")
        # Both replace the layer's module, so they act only where forward() calls it.
        uncalled = [layer["name"] for layer in result["layers"] if not layer["module_called"]]
        if uncalled:
            raise AmctValueError(f"{_FUNC}(): layer '{uncalled[0]}' is used only through its weight (as in "
                                 "F.linear(x, module.weight), or MultiheadAttention's out_proj), which auto "
                                 f"calibration does not support; set its quant_enable to false in config file "
                                 f"'{config_file}', or quantize the model with quantize_model")
        self.evaluator.calibration(calibration_model)
        calibrator = result["calibrator"]
        if not calibrator.finished:
            seen = min(calibrator.batches_seen(i) for i in range(calibrator.layer_count))
            raise RuntimeError(f"model_evaluator.calibration() ran the calibration model on {seen} batches; the "
                               f"config's batch_num is {calibrator.batch_num}, so it must run at least that many")
        layers = result["layers"]
        biases = [[] if layer["bias"] is None else layer["bias"] for layer in layers]
        quants = _amct.layer_fake_quant(self.record, [layer["name"] for layer in layers], biases)
        calibration_model = without_calibration(calibration_model)
        fake_quant_model = copy.deepcopy(calibration_model)
        for layer, quant in zip(layers, quants):
            module = fake_quant_model.get_submodule(layer["name"])
            set_submodule(fake_quant_model, layer["name"], fake_quant_layer(module, layer, quant))
        return calibration_model, fake_quant_model, result, quants

    def _sensitivity(self, calibration_model, result, quants):
        """Runs the calibration again with probes on every quantized layer:
        the float layer (with its BatchNorm where one was fused) against the
        fake-quant layer, on the inputs the calibration model gives it."""
        layers = result["layers"]
        sensitivity = _amct.LayerSensitivity([layer["name"] for layer in layers])
        reference_model = copy.deepcopy(self.model)
        fused = dict(result["fused_batchnorms"])
        batch_num = result["calibrator"].batch_num
        for index, (layer, quant) in enumerate(zip(layers, quants)):
            name = layer["name"]
            module = calibration_model.get_submodule(name)
            reference = reference_model.get_submodule(name)
            if name in fused:
                reference = nn.Sequential(reference, reference_model.get_submodule(fused[name]))
            fake_quant = fake_quant_layer(module, layer, quant)
            set_submodule(calibration_model, name,
                          SensitivityProbe(module, reference, fake_quant, sensitivity, index, batch_num))
        self.evaluator.calibration(calibration_model)
        return sensitivity.scores()


def _write_results(search, config_file, record_file, save_dir, directory, temp_dir):
    history = os.path.join(os.getcwd(), _HISTORY_DIR, _HISTORY_FILE)
    outcome = search.outcome
    if outcome == "all_rolled_back":
        # No model satisfies the metric: as AMCT, leave no model behind at the prefix.
        search.write_results(config_file, directory, history, [])
        for kind in ("deploy", "fake_quant", "qdq"):
            path = _amct.output_model_path(save_dir, kind)
            if os.path.isfile(path):
                os.remove(path)
        logger.info("auto calibration: no configuration satisfies metric_eval, even with a single layer "
                    "quantized; no model is written")
        return
    # The last trial is always the final configuration, so its files are the result.
    save_model(os.path.join(temp_dir, "modified_model.onnx"), os.path.join(temp_dir, "record.txt"), save_dir)
    copies = [(os.path.join(temp_dir, "record.txt"), record_file)]
    sidecar = _amct.record_sidecar_path(os.path.join(temp_dir, "record.txt"))
    if os.path.isfile(sidecar):
        copies.append((sidecar, _amct.record_sidecar_path(record_file)))
    search.write_results(config_file, directory, history, copies)
    rolled_back = [layer for layer, quantized in search.final_config if not quantized]
    logger.info("auto calibration finished after %d trials: %d layers rolled back%s; models at %s", search.trials,
                len(rolled_back), f" ({', '.join(rolled_back)})" if rolled_back else "", save_dir)
