"""Export of the user's model to ONNX, and the description of its modules.

torch 2.13's default exporter is the dynamo-based one; it records for every
ONNX node the module scopes it came from, which the C++ core uses to name
nodes after torch modules. The exporter's graph optimizer is turned off so
that BatchNorm nodes and parameter names survive for our own passes.

Models with large weights are not handed over as bytes: the exporter writes
them to a temporary model file whose weights are in an external data file
(ONNX external data), which the core reads. Bytes would hold the weights
three times over (the exporter's proto, its serialization, the core's parse)
and cannot exceed protobuf's 2 GiB.

The exporter is not thread-safe: two exports at once in one process fail or
return a graph without module scopes (then "No layer support quantization").
It also changes process-wide state around the export (warning filters,
stdout, logger levels). Exports are therefore serialized by _EXPORT_LOCK.
"""

import contextlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import warnings

import torch

from amct_pytorch.errors import AmctTypeError, AmctValueError

_EXPORT_LOCK = threading.Lock()


def as_input_tuple(input_data):
    """AMCT takes a tensor (treated as a 1-tuple) or a tuple of inputs."""
    if isinstance(input_data, torch.Tensor):
        return (input_data,)
    if isinstance(input_data, tuple):
        return input_data
    raise AmctTypeError(
        f"input_data must be a torch.Tensor or a tuple of inputs, got {type(input_data).__name__}")


def check_export_settings(input_names, output_names, dynamic_axes):
    """The checks AMCT applies to the export settings (docs/amct-reference.md#export-settings)."""
    for arg_name, names in (("input_names", input_names), ("output_names", output_names)):
        if names is None:
            continue
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise AmctTypeError(f"{arg_name} must be a list of strings, got {names!r}")
    if dynamic_axes is None:
        return
    if not isinstance(dynamic_axes, dict):
        raise AmctTypeError(f"dynamic_axes must be a dict, got {type(dynamic_axes).__name__}")
    for key, axes in dynamic_axes.items():
        if not isinstance(key, str):
            raise AmctTypeError(f"dynamic_axes keys must be tensor names (str), got {key!r}")
        if isinstance(axes, dict):
            indices = list(axes.keys())
            if not all(isinstance(v, str) for v in axes.values()):
                raise AmctTypeError(f"dynamic_axes['{key}'] must map axis indices to names (str), got {axes!r}")
        elif isinstance(axes, (list, tuple)):
            indices = list(axes)
        else:
            raise AmctTypeError(f"dynamic_axes['{key}'] must be a dict {{axis: name}} or a list of axes, got {axes!r}")
        for axis in indices:
            if not isinstance(axis, int) or isinstance(axis, bool):
                raise AmctTypeError(f"dynamic_axes['{key}']: axis {axis!r} must be an int")
            if axis < 0:
                raise AmctValueError(f"dynamic_axes['{key}']: axis {axis} cannot be negative")


# Parameters and buffers of at least this many bytes go to the core through
# a model file with external data instead of bytes.
EXTERNAL_EXPORT_BYTES = 64 << 20


def _weight_bytes(model):
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


@contextlib.contextmanager
def exported_model(model, input_data, input_names=None, output_names=None, dynamic_axes=None, near=None):
    """Exports `model` traced on `input_data` and yields what the core reads:
    the serialized ONNX, or for weights of EXTERNAL_EXPORT_BYTES or more the
    path of a model file with its weights in external data. That file lies
    in a temporary directory, in the directory of the output file `near`
    when it exists (a system temporary directory may be a RAM disk too small
    for the weights), and is removed afterwards."""
    args = as_input_tuple(input_data)
    kwargs = None
    if args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], args[-1]
    check_export_settings(input_names, output_names, dynamic_axes)
    if _weight_bytes(model) < EXTERNAL_EXPORT_BYTES:
        yield _export(model, args, kwargs, input_names, output_names, dynamic_axes, None)
        return
    parent = os.path.dirname(os.path.abspath(near)) if near else None
    with tempfile.TemporaryDirectory(prefix=".amct-export-", dir=parent if parent and os.path.isdir(parent) else None) as tmp:
        path = os.path.join(tmp, "exported.onnx")
        _export(model, args, kwargs, input_names, output_names, dynamic_axes, path)
        yield path


def _export(model, args, kwargs, input_names, output_names, dynamic_axes, path):
    """The serialized model, or (with `path`) None after writing it to `path` with external data."""
    quiet = io.StringIO()
    try:
        with _EXPORT_LOCK, warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_loggers():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, args, kwargs=kwargs, input_names=input_names, output_names=output_names,
                dynamic_axes=dynamic_axes, dynamo=True, optimize=False, external_data=False)
            # model_proto and save() build the proto from the exporter's IR: still the exporter's code.
            if path is not None:
                program.save(path, external_data=True)
                return None
            data = program.model_proto.SerializeToString()
    except Exception as error:  # the exporter raises many types; report them uniformly
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the exporter colours its messages
        raise RuntimeError(f"the model cannot be exported to ONNX: {type(error).__name__}: {detail}") from error
    if not data:
        raise RuntimeError("the model cannot be exported to ONNX: the exporter produced an empty model")
    return data


@contextlib.contextmanager
def _quiet_loggers():
    names = ["torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch._export"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def describe_modules(model):
    """JSON list of named_modules() with the attributes the core's checks need."""
    items = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        item = {
            "name": name,
            "type": type(module).__name__,
            "has_weight": isinstance(weight, torch.Tensor),
            "has_bias": isinstance(bias, torch.Tensor),
            "weight_id": id(weight) if isinstance(weight, torch.Tensor) else 0,
            "training": bool(module.training),
            "dtype": "float16" if isinstance(weight, torch.Tensor) and weight.dtype == torch.float16 else "float",
            # torch.nn classes the module's class derives from, so that a
            # subclass of a quantizable class is reported, not silently skipped.
            "torch_bases": [c.__name__ for c in type(module).__mro__[1:] if c.__module__.startswith("torch.nn.")],
        }
        for attr in ("padding_mode", "affine", "track_running_stats", "num_layers", "bidirectional", "dropout",
                     "proj_size"):
            if hasattr(module, attr):
                item[attr] = getattr(module, attr)
        if hasattr(module, "dilation"):
            dilation = module.dilation
            item["dilation"] = list(dilation) if isinstance(dilation, (tuple, list)) else [dilation]
        items.append(item)
    return json.dumps(items)
