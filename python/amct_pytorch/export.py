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

One export serves a whole flow: create_quant_config, quantize_preprocess,
quantize_model and the trials of accuracy_based_auto_calibration on the same
model, inputs and export settings reuse the exporter's program
(docs/design-notes.md#one-export-per-flow). The program's initializers are the
model's own parameter tensors, not copies, so the cache holds no second copy
of the weights; each use serializes it anew (a fraction of the export's time).
"""

import contextlib
import io
import itertools
import json
import logging
import os
import re
import tempfile
import threading
import warnings
import weakref

import torch

from amct_pytorch.errors import AmctTypeError, AmctValueError
from amct_pytorch.progress import Progress

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
def exported_model(model, input_data, input_names=None, output_names=None, dynamic_axes=None, near=None, *,
                   source, release=False, any_settings=False):
    """Exports `model` traced on `input_data` and yields what the core reads:
    the serialized ONNX, or for weights of EXTERNAL_EXPORT_BYTES or more the
    path of a model file with its weights in external data. That file lies
    in a temporary directory, in the directory of the output file `near`
    when it exists (a system temporary directory may be a RAM disk too small
    for the weights), and is removed afterwards.

    `source` is the user's model of which `model` is a copy sharing its
    tensors: the export is cached for it and reused while its fingerprint
    (ExportFingerprint) is unchanged; `release` drops the cached export after
    this use succeeded (the flow's last step). A step that reads no input or output
    names nor dynamic axes (quantize_preprocess) passes `any_settings` to use
    an export made with other settings, which stays cached as it was."""
    args = as_input_tuple(input_data)
    kwargs = None
    if args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], args[-1]
    check_export_settings(input_names, output_names, dynamic_axes)
    fingerprint = ExportFingerprint(source, args, kwargs, (input_names, output_names, dynamic_axes))
    program = _cached_program(source, fingerprint, any_settings)
    if program is None:
        program = _export(model, args, kwargs, input_names, output_names, dynamic_axes)
        with _CACHE_LOCK:
            _CACHE[source] = (fingerprint, program)
    yield from _handed_over(program, model, near)
    if release:  # after success only: a step that failed (a bad config) may be retried on the same export
        release_export(source)


def _handed_over(program, model, near):
    if _weight_bytes(model) < EXTERNAL_EXPORT_BYTES:
        yield _serialized(program)
        return
    parent = os.path.dirname(os.path.abspath(near)) if near else None
    with tempfile.TemporaryDirectory(prefix=".amct-export-", dir=parent if parent and os.path.isdir(parent) else None) as tmp:
        path = os.path.join(tmp, "exported.onnx")
        with _exporter_errors():
            # model_proto and save() build the proto from the exporter's IR: still the exporter's code.
            program.save(path, external_data=True)
        yield path


def release_export(source):
    """Drops the export cached for the user's model `source`, if any."""
    with _CACHE_LOCK:
        _CACHE.pop(source, None)


# The user's model -> (ExportFingerprint, the exporter's ONNXProgram): at most
# one export per model, gone with the model (weak keys).
_CACHE = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cached_program(source, fingerprint, any_settings):
    with _CACHE_LOCK:
        entry = _CACHE.get(source)
    if entry is None:
        return None
    if not entry[0].same_model(fingerprint):
        release_export(source)  # the model changed: the old export is of no further use
        return None
    return entry[1] if any_settings or entry[0].settings == fingerprint.settings else None


_SIMPLE_TYPES = (bool, int, float, str, bytes, type(None))


def _is_simple(value):
    if isinstance(value, (tuple, list)):
        return all(_is_simple(v) for v in value)
    return isinstance(value, _SIMPLE_TYPES)


class ExportFingerprint:
    """What an export depends on, cheap to take (no tensor data is read):
    - every module: its path, the module object itself and its class, the
      training flag and its other plain attributes (kernel sizes, eps,
      inplace, ...), the objects in its instance dictionary (a forward
      replaced on the instance) and its hooks;
    - every parameter and buffer: the tensor object, its storage address,
      shape, dtype, device and version counter (which every in-place write,
      load_state_dict included, advances);
    - the inputs: tensor shapes, dtypes, devices; other values by equality;
    - the export settings (input_names, output_names, dynamic_axes).
    Objects are compared by identity through weak references, so the
    fingerprint keeps nothing of the model alive and an id reused by a new
    object does not match."""

    def __init__(self, model, args, kwargs, settings):
        refs = []
        modules = []
        for name, module in model.named_modules(remove_duplicate=False):
            refs.append(weakref.ref(module))
            simple = []
            others = []
            for key, value in vars(module).items():
                if key in ("_parameters", "_buffers", "_modules"):
                    continue
                if _is_simple(value):
                    simple.append((key, value))
                elif isinstance(value, torch.Tensor):  # a tensor attribute is a constant of the export
                    refs.append(weakref.ref(value))
                    others.append((key, value.data_ptr(), tuple(value.shape), value.dtype, value._version))
                elif isinstance(value, dict):  # hook dictionaries and the like: which callables they hold
                    others.append((key, tuple((k, id(v)) for k, v in value.items())))
                else:
                    others.append((key, id(value)))
            modules.append((name, type(module), tuple(simple), tuple(others)))
        tensors = []
        for name, tensor in itertools.chain(model.named_parameters(remove_duplicate=False),
                                            model.named_buffers(remove_duplicate=False)):
            refs.append(weakref.ref(tensor))
            tensors.append((name, tensor.data_ptr(), tuple(tensor.shape), tensor.dtype, tensor.device,
                            tensor._version, tensor.requires_grad))
        leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
        inputs = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                inputs.append(("tensor", tuple(leaf.shape), leaf.dtype, leaf.device, leaf.requires_grad))
            elif _is_simple(leaf):
                inputs.append(("value", type(leaf), leaf))
            else:
                refs.append(weakref.ref(leaf) if _weakrefable(leaf) else leaf)
                inputs.append(("object", id(leaf)))
        self._refs = refs
        self._key = (tuple(modules), tuple(tensors), tuple(inputs), str(spec))
        self.settings = repr(settings)

    def same_model(self, other):
        """The same model and inputs, whatever the export settings."""
        if self._key != other._key or len(self._refs) != len(other._refs):
            return False
        return all(_referent(a) is _referent(b) and _referent(a) is not None for a, b in zip(self._refs, other._refs))


def _weakrefable(value):
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


def _referent(ref):
    return ref() if isinstance(ref, weakref.ref) else ref


def _serialized(program):
    with _exporter_errors():
        data = program.model_proto.SerializeToString()
    if not data:
        raise RuntimeError("the model cannot be exported to ONNX: the exporter produced an empty model")
    return data


@contextlib.contextmanager
def _exporter_errors():
    """The exporter raises many types; report them uniformly."""
    try:
        yield
    except Exception as error:
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the exporter colours its messages
        raise RuntimeError(f"the model cannot be exported to ONNX: {type(error).__name__}: {detail}") from error


def _export(model, args, kwargs, input_names, output_names, dynamic_axes):
    """The exporter's ONNXProgram (its initializers are the model's tensors)."""
    quiet = io.StringIO()
    with Progress("amct: exporting the model to ONNX"), _exporter_errors(), _EXPORT_LOCK, warnings.catch_warnings(), \
            contextlib.redirect_stdout(quiet), _quiet_loggers():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, args, kwargs=kwargs, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, dynamo=True, optimize=False, external_data=False)
    return program


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
            value = getattr(module, attr, None)
            # Only the torch classes' own settings: other modules may use the
            # names for anything (BERT's self.dropout is an nn.Dropout).
            if isinstance(value, (bool, int, float, str)):
                item[attr] = value
        if hasattr(module, "dilation"):
            dilation = module.dilation
            item["dilation"] = list(dilation) if isinstance(dilation, (tuple, list)) else [dilation]
        items.append(item)
    return json.dumps(items)
