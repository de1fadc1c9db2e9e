"""AMCT's public PTQ functions. Argument checks live here; everything that
parses a file, computes a statistic or rewrites a graph is in the C++ core."""

import copy
import logging
import os

import torch

from amct_pytorch.errors import AmctTypeError, AmctValueError

from amct_pytorch import _amct
from amct_pytorch.calibration import build_calibration_model
from amct_pytorch.export import as_input_tuple, describe_modules, export_onnx

logger = logging.getLogger("amct_pytorch")


def _check_type(func, name, value, expected, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise AmctTypeError(f"{func}(): argument {name} must be {names}, got {type(value).__name__}")


def _copy_model(model):
    # A calibration model holds a C++ calibrator that cannot be copied: refuse
    # models with quantization modules before trying.
    _amct.check_no_quantization_modules(describe_modules(model))
    try:
        return copy.deepcopy(model)
    except Exception as error:
        raise RuntimeError(f"the model cannot be deep-copied, so it cannot be quantized without modifying it: {error}") from error


def create_quant_config(config_file, model, input_data, skip_layers=None, batch_num=1, activation_offset=True,
                        config_defination=None):
    """Writes the quantization config JSON for `model` (docs/amct-reference.md#create_quant_config)."""
    func = "create_quant_config"
    _check_type(func, "config_file", config_file, str)
    _check_type(func, "model", model, torch.nn.Module)
    _check_type(func, "skip_layers", skip_layers, list, allow_none=True)
    _check_type(func, "batch_num", batch_num, int)
    _check_type(func, "activation_offset", activation_offset, bool)
    _check_type(func, "config_defination", config_defination, str, allow_none=True)
    if skip_layers is not None and not all(isinstance(s, str) for s in skip_layers):
        raise AmctTypeError(f"{func}(): skip_layers must be a list of module names (str)")
    if batch_num <= 0:
        raise AmctValueError(f"{func}(): batch_num must be greater than zero, got {batch_num}")
    work = _copy_model(model)
    onnx_bytes = export_onnx(work, input_data)
    _amct.create_quant_config(os.fspath(config_file), onnx_bytes, describe_modules(work), list(skip_layers or []),
                              batch_num, activation_offset, config_defination or "")


def quantize_model(config_file, modfied_onnx_file, record_file, model, input_data, input_names=None,
                   output_names=None, dynamic_axes=None, *, opset_version=11, fake_quantize_deconv_weights=False):
    """Returns the calibration model; writes the modified ONNX and the weight
    part of the record file (docs/amct-reference.md#quantize_model). The
    user's model is not modified.

    Beyond AMCT's arguments (keyword only):
    - opset_version: default-domain opset of the modified ONNX and so of the
      deploy and fake-quant models, 11 (AMCT's, and Ascend's ATC reads 11 to
      15) up to 21.
    - fake_quantize_deconv_weights: calibrate on fake-quantized ConvTranspose
      weights, like every other layer, instead of AMCT's float ones.
    """
    func = "quantize_model"
    _check_type(func, "config_file", config_file, str)
    _check_type(func, "modfied_onnx_file", modfied_onnx_file, str)
    _check_type(func, "record_file", record_file, str)
    _check_type(func, "model", model, torch.nn.Module)
    _check_type(func, "opset_version", opset_version, int)
    _check_type(func, "fake_quantize_deconv_weights", fake_quantize_deconv_weights, bool)
    work = _copy_model(model)
    onnx_bytes = export_onnx(work, input_data, input_names, output_names, dynamic_axes)
    result = _amct.quantize_model(config_file, modfied_onnx_file, record_file, onnx_bytes, describe_modules(work),
                                  opset_version, fake_quantize_deconv_weights,
                                  _layer_input_collector(work, input_data))
    return build_calibration_model(work, result)


def _layer_input_collector(model, input_data):
    """The callback through which the core asks for the inputs of the layers
    that ada_quantize optimises: one forward of `model` on input_data with
    hooks that keep each named layer's first input (its last call's, for a
    layer run twice)."""

    def collect(names):
        captured = {}

        def keep(name):
            def hook(_module, args):
                captured[name] = args[0].detach().float().cpu().contiguous().numpy()
            return hook

        handles = [model.get_submodule(name).register_forward_pre_hook(keep(name)) for name in names]
        try:
            with torch.no_grad():
                model(*as_input_tuple(input_data))
        finally:
            for handle in handles:
                handle.remove()
        return captured

    return collect


_SAVE_OUTPUTS = ("deploy", "fake_quant", "qdq")


def save_model(modfied_onnx_file, record_file, save_path, outputs=None, *, qdq_opset=None):
    """Writes <save_path>_deploy_model.onnx, <save_path>_fake_quant_model.onnx
    (docs/amct-reference.md#save_model) and <save_path>_qdq_model.onnx
    (standard QDQ ONNX) from the modified ONNX and the calibrated record.
    `outputs` picks a subset of ("deploy", "fake_quant", "qdq"); by default all
    three, where a QDQ model that cannot be written (its opset cannot hold the
    graph) is skipped with a warning instead of an error. The QDQ model's opset
    is the modified model's, at least 13, unless `qdq_opset` says otherwise.
    Returns the paths written."""
    func = "save_model"
    _check_type(func, "modfied_onnx_file", modfied_onnx_file, str)
    _check_type(func, "record_file", record_file, str)
    _check_type(func, "save_path", save_path, str)
    _check_type(func, "qdq_opset", qdq_opset, int, allow_none=True)
    qdq_optional = outputs is None
    if outputs is None:
        outputs = _SAVE_OUTPUTS
    if isinstance(outputs, str):
        outputs = (outputs,)
    unknown = [o for o in outputs if o not in _SAVE_OUTPUTS]
    if unknown:
        raise AmctValueError(f"{func}: unknown output {unknown[0]!r}; expected a subset of {_SAVE_OUTPUTS}")
    written, warnings = _amct.save_model(modfied_onnx_file, record_file, save_path, deploy="deploy" in outputs,
                                         fake_quant="fake_quant" in outputs, qdq="qdq" in outputs,
                                         qdq_optional=qdq_optional, qdq_opset=qdq_opset or 0)
    for warning in warnings:
        logger.warning("%s", warning)
    return written
