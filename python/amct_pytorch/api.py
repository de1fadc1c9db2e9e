"""AMCT's public PTQ functions. Argument checks live here; everything that
parses a file, computes a statistic or rewrites a graph is in the C++ core."""

import copy
import itertools
import logging
import os

import torch

from amct_pytorch.errors import AmctTypeError, AmctValueError

from amct_pytorch import _amct
from amct_pytorch.calibration import CALIBRATION_MARK, WeightOpObserver, build_calibration_model
from amct_pytorch.dmq import build_balancing_model
from amct_pytorch.export import as_input_tuple, describe_modules, exported_model
from amct_pytorch.progress import Progress
from amct_pytorch.qdq_calibration import observe_qdq_tensors, runtime_available

logger = logging.getLogger("amct_pytorch")


def _check_type(func, name, value, expected, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise AmctTypeError(f"{func}(): argument {name} must be {names}, got {type(value).__name__}")


def _copy_model(model):
    """A copy of `model` whose modules are new but whose parameters and
    buffers are still the user's tensors: the weights (possibly GBs) are not
    copied to export them. _own_tensors() copies those the caller keeps."""
    # A calibration model holds a C++ calibrator that cannot be copied: refuse
    # models with quantization modules before trying.
    _amct.check_no_quantization_modules(describe_modules(model))
    if hasattr(model, CALIBRATION_MARK):
        raise RuntimeError("the model is a calibration model (its layers used through their weight are observed by "
                           "amct); pass the original float model, not a calibration model")
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    try:
        return copy.deepcopy(model, memo)
    except Exception as error:
        raise RuntimeError(f"the model cannot be deep-copied, so it cannot be quantized without modifying it: {error}") from error


def _own_tensors(work, model):
    """Gives `work` its own copy of each parameter and buffer it still shares
    with the user's `model` (one copy per tensor, so tied weights stay tied)."""
    shared = {id(t) for t in itertools.chain(model.parameters(), model.buffers())}
    copies = {}
    for module in work.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and id(param) in shared:
                if id(param) not in copies:
                    copies[id(param)] = torch.nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
                module._parameters[name] = copies[id(param)]
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and id(buffer) in shared:
                if id(buffer) not in copies:
                    copies[id(buffer)] = buffer.clone()
                module._buffers[name] = copies[id(buffer)]
    return work


def _check_limit(func, external_data_limit):
    _check_type(func, "external_data_limit", external_data_limit, int, allow_none=True)
    if external_data_limit is not None and (isinstance(external_data_limit, bool) or external_data_limit < 1):
        raise AmctValueError(f"{func}(): external_data_limit must be a positive number of bytes, got {external_data_limit!r}")
    return _DEFAULT_EXTERNAL_DATA_LIMIT if external_data_limit is None else external_data_limit


# AMCT moves initializers to external data files from this serialized size on.
_DEFAULT_EXTERNAL_DATA_LIMIT = 2_000_000_000


def create_quant_config(config_file, model, input_data, skip_layers=None, batch_num=1, activation_offset=True,
                        config_defination=None, *, quantize_subclasses=True, linear_channel_wise=False,
                        input_names=None, output_names=None, dynamic_axes=None):
    """Writes the quantization config JSON for `model` (docs/amct-reference.md#create_quant_config).

    Beyond AMCT's arguments (keyword only):
    - quantize_subclasses: subclasses of the quantizable classes are layers
      too (when their forward runs the class's own op on their weight);
      False is AMCT's exact-class matching and is written into the config.
      With config_defination, the simple config's own field decides.
    - linear_channel_wise: Linear layers get one weight scale per output
      channel (channel_wise true) instead of AMCT's one per tensor; written
      into the config as its root key "linear_channel_wise". With
      config_defination, the simple config's own field decides.
    - input_names, output_names, dynamic_axes: the export settings that
      quantize_model will get; with the same settings (and an unchanged model
      and inputs) quantize_model reuses this function's export.
    """
    func = "create_quant_config"
    _check_type(func, "config_file", config_file, str)
    _check_type(func, "model", model, torch.nn.Module)
    _check_type(func, "skip_layers", skip_layers, list, allow_none=True)
    _check_type(func, "batch_num", batch_num, int)
    _check_type(func, "activation_offset", activation_offset, bool)
    _check_type(func, "config_defination", config_defination, str, allow_none=True)
    _check_type(func, "quantize_subclasses", quantize_subclasses, bool)
    _check_type(func, "linear_channel_wise", linear_channel_wise, bool)
    if skip_layers is not None and not all(isinstance(s, str) for s in skip_layers):
        raise AmctTypeError(f"{func}(): skip_layers must be a list of module names (str)")
    if batch_num <= 0:
        raise AmctValueError(f"{func}(): batch_num must be greater than zero, got {batch_num}")
    work = _copy_model(model)
    with exported_model(work, input_data, input_names, output_names, dynamic_axes, near=config_file,
                        source=model) as exported:
        _amct.create_quant_config(os.fspath(config_file), exported, describe_modules(work), list(skip_layers or []),
                                  batch_num, activation_offset, config_defination or "", quantize_subclasses,
                                  linear_channel_wise)


def quantize_preprocess(config_file, record_file, model, input_data):
    """DMQ balancing, step 1 (docs/amct-reference.md#dmq-balancing): returns a
    copy of `model` whose DMQ layers (those with dmq_balancer_param in
    `config_file`) report their inputs; after the first complete forward the
    per-input-channel tensor_balance_factor of each is written to
    `record_file` (recreated empty now), which quantize_model then reads. The
    user's model is not modified. Later forwards do not change the record
    (AMCT's behaviour)."""
    func = "quantize_preprocess"
    _check_type(func, "config_file", config_file, str)
    _check_type(func, "record_file", record_file, str)
    _check_type(func, "model", model, torch.nn.Module)
    work = _copy_model(model)
    with exported_model(work, input_data, near=record_file, source=model, any_settings=True) as exported:
        result = _amct.quantize_preprocess(config_file, record_file, exported, describe_modules(work))
    # The wrappers run the user's modules: give the copy its own tensors.
    return _own_tensors(build_balancing_model(work, result), model)


def quantize_model(config_file, modfied_onnx_file, record_file, model, input_data, input_names=None,
                   output_names=None, dynamic_axes=None, *, opset_version=11, fake_quantize_deconv_weights=False,
                   external_data_limit=None, full_int8_qdq=False):
    """Returns the calibration model; writes the modified ONNX and the weight
    part of the record file (docs/amct-reference.md#quantize_model). The
    user's model is not modified.

    Beyond AMCT's arguments (keyword only):
    - opset_version: default-domain opset of the modified ONNX and so of the
      deploy and fake-quant models, 11 (AMCT's, and Ascend's ATC reads 11 to
      15) up to 21.
    - fake_quantize_deconv_weights: calibrate on fake-quantized ConvTranspose
      weights, like every other layer, instead of AMCT's float ones.
    - external_data_limit: from this serialized size on (default
      2,000,000,000 bytes, AMCT's) the largest initializers of the modified
      ONNX go to "<modfied_onnx_file>.data" (ONNX external data) until the
      rest fits; a small value forces it.
    - full_int8_qdq: calibration also measures the tensors between the
      layers that the full-INT8 QDQ model quantizes (residual Adds,
      squeeze-excite gates, Concat, ...) and writes their ranges to
      "<record_file>.ranges.json"; save_model then writes that model. It
      costs one ONNX Runtime forward of the modified ONNX per calibration
      batch and needs onnxruntime installed.
    """
    func = "quantize_model"
    _check_type(func, "config_file", config_file, str)
    _check_type(func, "modfied_onnx_file", modfied_onnx_file, str)
    _check_type(func, "record_file", record_file, str)
    _check_type(func, "model", model, torch.nn.Module)
    _check_type(func, "opset_version", opset_version, int)
    _check_type(func, "fake_quantize_deconv_weights", fake_quantize_deconv_weights, bool)
    _check_type(func, "full_int8_qdq", full_int8_qdq, bool)
    if full_int8_qdq and not runtime_available():
        raise AmctValueError(f"{func}: full_int8_qdq=True calibrates through ONNX Runtime, which is not installed "
                             "(pip install onnxruntime)")
    limit = _check_limit(func, external_data_limit)
    calibration_model, _ = quantize_for_calibration(config_file, modfied_onnx_file, record_file, model, input_data,
                                                    input_names, output_names, dynamic_axes, opset_version,
                                                    fake_quantize_deconv_weights, limit, qdq_tensors=full_int8_qdq)
    return calibration_model


def quantize_for_calibration(config_file, modfied_onnx_file, record_file, model, input_data, input_names,
                             output_names, dynamic_axes, opset_version=11, fake_quantize_deconv_weights=False,
                             external_data_limit=_DEFAULT_EXTERNAL_DATA_LIMIT, release_export=True, qdq_tensors=False):
    """quantize_model without the argument checks; returns the calibration
    model and the core's result (layers, fused BatchNorms, calibrator). The
    flow's cached export is dropped afterwards unless release_export is False
    (auto calibration quantizes once per trial). With `qdq_tensors`
    calibration also measures the full-INT8 QDQ model's tensors
    (qdq_calibration.py)."""
    work = _copy_model(model)
    with exported_model(work, input_data, input_names, output_names, dynamic_axes, near=modfied_onnx_file,
                        source=model, release=release_export) as exported:
        result = _amct.quantize_model(config_file, modfied_onnx_file, record_file, exported, describe_modules(work),
                                      opset_version, fake_quantize_deconv_weights, external_data_limit,
                                      _layer_input_collector(work, input_data),
                                      full_qdq_tensors=qdq_tensors)
    # The quantized layers get the core's weights; the rest copies of the user's.
    calibration_model = _own_tensors(build_calibration_model(work, result), model)
    return observe_qdq_tensors(calibration_model, result, modfied_onnx_file), result


def _layer_input_collector(model, input_data):
    """The callback through which the core asks for the inputs of the layers
    that ada_quantize optimises: one forward of `model` on input_data that
    keeps the input of the op reading each named layer's weight (its last
    call's, for a layer run twice). The op's input, not the module call's:
    it is what the layer's ONNX node computes on, also for a layer used only
    through its weight (F.linear(x, m.weight), MultiheadAttention's
    out_proj) and for a subclass that pads its input before the op."""

    def collect(names):
        sink = _InputSink()
        layers = [(index, name, model.get_submodule(name).weight) for index, name in enumerate(names)]
        observer = WeightOpObserver(sink, layers)
        with torch.no_grad(), observer:
            model(*as_input_tuple(input_data))
        return {name: sink.inputs[index] for index, name in enumerate(names) if index in sink.inputs}

    return collect


class _InputSink:
    """Stands in for the calibrator behind a WeightOpObserver: keeps a copy of
    each layer's latest input (a later in-place op of the forward may rewrite
    the tensor) and never finishes."""

    finished = False

    def __init__(self):
        self.inputs = {}

    def observe(self, index, activation):
        self.inputs[index] = activation.clone().numpy()
        return False


_SAVE_OUTPUTS = ("deploy", "fake_quant", "qdq")


def save_model(modfied_onnx_file, record_file, save_path, outputs=None, *, qdq_opset=None, external_data_limit=None,
               qdq_mode=None):
    """Writes <save_path>_deploy_model.onnx, <save_path>_fake_quant_model.onnx
    (docs/amct-reference.md#save_model) and <save_path>_qdq_model.onnx
    (standard QDQ ONNX) from the modified ONNX and the calibrated record.
    `outputs` picks a subset of ("deploy", "fake_quant", "qdq"); by default all
    three, where a QDQ model that cannot be written (its opset cannot hold the
    graph) is skipped with a warning instead of an error. The QDQ model's opset
    is the modified model's, at least 13, unless `qdq_opset` says otherwise.
    A model whose serialized size reaches `external_data_limit` (default
    2,000,000,000 bytes) keeps its largest initializers in external data
    files beside it (docs/amct-reference.md#output-files).
    `qdq_mode` 'full' quantizes every tensor calibration measured beyond the
    layers' inputs ("<record_file>.ranges.json"), so ONNX Runtime runs the
    ops between the layers as integer kernels too; 'layers' quantizes the
    layers only; None (default) is 'full' when those ranges exist
    (quantize_model(..., full_int8_qdq=True)).
    Returns the paths of the models written."""
    func = "save_model"
    _check_type(func, "modfied_onnx_file", modfied_onnx_file, str)
    _check_type(func, "record_file", record_file, str)
    _check_type(func, "save_path", save_path, str)
    _check_type(func, "qdq_opset", qdq_opset, int, allow_none=True)
    limit = _check_limit(func, external_data_limit)
    if qdq_mode not in (None, "full", "layers"):
        raise AmctValueError(f"{func}: qdq_mode is {qdq_mode!r}; expected 'full', 'layers' or None")
    qdq_optional = outputs is None
    if outputs is None:
        outputs = _SAVE_OUTPUTS
    if isinstance(outputs, str):
        outputs = (outputs,)
    unknown = [o for o in outputs if o not in _SAVE_OUTPUTS]
    if unknown:
        raise AmctValueError(f"{func}: unknown output {unknown[0]!r}; expected a subset of {_SAVE_OUTPUTS}")
    with Progress("amct: saving the models"):
        written, warnings = _amct.save_model(modfied_onnx_file, record_file, save_path, deploy="deploy" in outputs,
                                             fake_quant="fake_quant" in outputs, qdq="qdq" in outputs,
                                             qdq_optional=qdq_optional, qdq_opset=qdq_opset or 0,
                                             external_data_limit=limit, qdq_mode=qdq_mode or "auto")
    for warning in warnings:
        logger.warning("%s", warning)
    return written
