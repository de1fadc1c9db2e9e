"""The calibration model: the user's modules wrapped so that each forward
hands the layer's input to the C++ calibrator without copying it."""

import inspect
import logging
import threading

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from amct_pytorch.dmq import balance_inputs
from amct_pytorch.errors import AmctValueError
from amct_pytorch.module_tools import as_float32_cpu, set_submodule
from amct_pytorch.progress import Progress

logger = logging.getLogger("amct_pytorch")


def _feed(calibrator, index, activation):
    """Hands one batch of a layer's input to the calibrator: a float32,
    contiguous CPU tensor, which the tensor already is in the common case
    (then nothing is copied)."""
    if calibrator.observe(index, as_float32_cpu(activation)):
        logger.info("calibration finished after %d batches; record file written", calibrator.batch_num)


class ReportingCalibrator:
    """The calibrator as the calibration model's wrappers and observers see
    it: each observe also advances the progress bar (amct_pytorch.progress)
    by calibration batch; everything else is the C++ calibrator's."""

    def __init__(self, calibrator):
        self._calibrator = calibrator
        self._observed = 0
        self._progress = None

    def __getattr__(self, name):
        if name.startswith("_"):  # not the calibrator's (and no recursion while _calibrator is unset)
            raise AttributeError(name)
        return getattr(self._calibrator, name)

    @property
    def finished(self):  # read by every wrapper call: spared the __getattr__ fallback
        return self._calibrator.finished

    def observe(self, index, activation):
        finished = self._calibrator.observe(index, activation)
        if self._progress is None:  # made at the first batch, not when the model is built
            self._progress = Progress("amct: calibration batches", total=self._calibrator.batch_num)
        self._observed += 1
        self._progress.update(self._observed // self._calibrator.layer_count)
        if finished:
            self._progress.close("record written")
        return finished


class CalibrationWrapper(nn.Module):
    """Runs the wrapped module unchanged and feeds its first input to the
    calibrator until batch_num batches have been seen."""

    def __init__(self, sub_module, calibrator, index):
        super().__init__()
        self.sub_module = sub_module
        self._calibrator = calibrator
        self._index = index

    def forward(self, *args, **kwargs):
        if not self._calibrator.finished:
            _feed(self._calibrator, self._index, args[0])
        return self.sub_module(*args, **kwargs)


class RecurrentCalibrationWrapper(CalibrationWrapper):
    """Runs a wrapped nn.LSTM/nn.GRU unchanged and feeds the calibrator its
    input X and the hidden states H its cell reads: the initial state, then
    the outputs of every step but the last (one layer, one direction, so the
    output sequence is the hidden state sequence). AMCT calibrates H on the
    same sequence, without another forward."""

    def __init__(self, sub_module, calibrator, index, recurrent_index):
        super().__init__(sub_module, calibrator, index)
        self._recurrent_index = recurrent_index

    def forward(self, inputs, hx=None):
        if self._calibrator.finished:
            return self.sub_module(inputs, hx)
        if hx is None:
            raise AmctValueError(f"calibration: {type(self.sub_module).__name__} layer "
                                 f"'{self._calibrator.layer_name(self._index)}' was called without its initial state "
                                 "hx; AMCT quantizes LSTM/GRU layers whose state is an input of the model")
        output, state = self.sub_module(inputs, hx)
        h0 = hx[0] if isinstance(hx, tuple) else hx
        if inputs.dim() == 2:  # unbatched: output [T, H], h0 [1, H]
            hidden = torch.cat((h0, output[:-1]), dim=0)
        elif self.sub_module.batch_first:  # output [B, T, H], h0 [1, B, H]
            hidden = torch.cat((h0.transpose(0, 1), output[:, :-1]), dim=1)
        else:  # output [T, B, H]
            hidden = torch.cat((h0, output[:-1]), dim=0)
        _feed(self._calibrator, self._index, inputs)
        _feed(self._calibrator, self._recurrent_index, hidden)
        return output, state


# The functional ops a quantizable class runs on its weight (the core checked
# that the exported op came from one of them, reading the weight itself).
_WEIGHT_OPS = frozenset({F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d})
_ATTENTION_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _argument(args, kwargs, position, name):
    if len(args) > position:
        return args[position]
    return kwargs.get(name)


class WeightOpObserver(TorchFunctionMode):
    """Feeds the calibrator the input of the op that reads a layer's weight,
    for layers whose module call is not that op: a weight used through
    F.linear(x, self.qkv.weight), a subclass whose forward pads its input
    before F.conv2d, nn.MultiheadAttention's out_proj. The op is recognised by
    its weight argument being the layer's Parameter itself.

    A torch-function mode sees only the outermost overridable call, so the
    out_proj F.linear inside F.multi_head_attention_forward is invisible;
    that call is run with an identity out_proj instead, which returns the
    out_proj input exactly (x·1 plus zeros), and out_proj is applied after.
    While the mode is active torch also skips MultiheadAttention's fused
    fast path, whose results differ from the exported (slow) path's only by
    float rounding."""

    def __init__(self, calibrator, layers):
        super().__init__()
        self._calibrator = calibrator
        # id -> (Parameter, index, name); the Parameter is kept so that ids stay valid.
        self._layers = {id(weight): (weight, index, name) for index, name, weight in layers}
        self._warned = set()

    def _layer_of(self, weight):
        entry = self._layers.get(id(weight))
        return entry if entry is not None and entry[0] is weight else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _WEIGHT_OPS:
            entry = self._layer_of(_argument(args, kwargs, 1, "weight"))
            if entry is not None and not self._calibrator.finished:
                _feed(self._calibrator, entry[1], _argument(args, kwargs, 0, "input"))
        elif func is F.multi_head_attention_forward:
            return self._attention(func, args, kwargs)
        return func(*args, **kwargs)

    def _attention(self, func, args, kwargs):
        bound = _ATTENTION_SIGNATURE.bind(*args, **kwargs)
        weight = bound.arguments.get("out_proj_weight")
        entry = self._layer_of(weight)
        if entry is None or self._calibrator.finished:
            return func(*args, **kwargs)
        bias = bound.arguments.get("out_proj_bias")
        bound.arguments["out_proj_weight"] = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        bound.arguments["out_proj_bias"] = None
        projected_input, attention_weights = func(*bound.args, **bound.kwargs)
        _feed(self._calibrator, entry[1], projected_input)
        return F.linear(projected_input, weight, bias), attention_weights

    def warn_unseen(self):
        """A layer the forward never fed means its op ran on a copy of the
        weight (or not at all): calibration cannot finish, so say which."""
        for weight, index, name in self._layers.values():
            if self._calibrator.batches_seen(index) == 0 and name not in self._warned:
                self._warned.add(name)
                logger.warning("calibration: layer '%s' got no input in this forward: no op ran on its weight "
                               "parameter itself (the op may be skipped on this input, or get a copy of the "
                               "weight); the record is written only after every layer got batch_num batches", name)


class _ObserverHooks:
    """Activates a WeightOpObserver around the model's forward while
    calibration runs. Torch-function modes are per thread, so is the depth
    that makes a nested call of the root module enter it only once."""

    def __init__(self, calibrator, observer):
        self._calibrator = calibrator
        self._observer = observer
        self._local = threading.local()
        self._handles = ()

    def attach(self, model):
        self._handles = (model.register_forward_pre_hook(self.before),
                         model.register_forward_hook(self.after, always_call=True))
        setattr(model, CALIBRATION_MARK, self)

    def detach(self, model):
        for handle in self._handles:
            handle.remove()
        delattr(model, CALIBRATION_MARK)

    def before(self, _module, _args):
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.entered = not self._calibrator.finished
            if self._local.entered:
                self._observer.__enter__()
        self._local.depth = depth + 1

    def after(self, _module, _args, _output):
        self._local.depth -= 1
        if self._local.depth == 0 and self._local.entered:
            self._local.entered = False
            self._observer.__exit__(None, None, None)
            self._observer.warn_unseen()


# Set on a calibration model whose layers are observed at their weight's op,
# since such a model may hold no CalibrationWrapper to recognise it by.
CALIBRATION_MARK = "_amct_weight_op_observer"


def without_calibration(calibration_model):
    """A calibration model whose calibration has finished, with its wrappers
    replaced by their layers and its weight-op observer detached: it computes
    the same, and no longer holds the C++ calibrator, which cannot be copied."""
    for name, module in list(calibration_model.named_modules()):
        if isinstance(module, CalibrationWrapper):
            set_submodule(calibration_model, name, module.sub_module)
    hooks = getattr(calibration_model, CALIBRATION_MARK, None)
    if hooks is not None:
        hooks.detach(calibration_model)
    return calibration_model


def _set_core_parameters(module, weight_name, weight, bias=None):
    """Gives `module` new parameters over the core's arrays (not copied:
    the caller's model may still share its tensors with the user's), in the
    dtype, shape and requires_grad of its current weight."""
    old = getattr(module, weight_name)
    setattr(module, weight_name, nn.Parameter(torch.from_numpy(weight).to(old.dtype).reshape(old.shape),
                                              requires_grad=old.requires_grad))
    if bias is not None:
        module.bias = nn.Parameter(torch.from_numpy(bias).to(old.dtype), requires_grad=old.requires_grad)


def build_calibration_model(model, result):
    """Applies the core's results to `model` (a copy made for the caller)."""
    calibrator = ReportingCalibrator(result["calibrator"])
    for _conv, batchnorm in result["fused_batchnorms"]:
        set_submodule(model, batchnorm, nn.Identity())
    # AMCT fuses a conv's BatchNorm whether or not the conv is quantized: the
    # convs that stay float compute with the fused values.
    for name, (weight, bias) in result["fused_float_convs"].items():
        _set_core_parameters(model.get_submodule(name), "weight", weight, bias)
    observed_at_op = []
    for index, layer in enumerate(result["layers"]):
        module = model.get_submodule(layer["name"])
        if layer["recurrent_weight"] is not None:
            _set_core_parameters(module, "weight_ih_l0", layer["weight"])
            _set_core_parameters(module, "weight_hh_l0", layer["recurrent_weight"])
            set_submodule(model, layer["name"],
                          RecurrentCalibrationWrapper(module, calibrator, index, layer["recurrent_index"]))
            continue
        if layer["weight"] is not None:
            _set_core_parameters(module, "weight", layer["weight"], layer["bias"])
        if layer["observe_at"] == "weight_op":
            if layer["balance_factor"] is not None:
                raise AmctValueError(f"layer '{layer['name']}': DMQ balancing needs the layer's module call to divide "
                                     "its input, but the layer is used only through its weight; disable "
                                     "dmq_balancer_param for it")
            observed_at_op.append((index, layer["name"], module.weight))
        else:
            set_submodule(model, layer["name"], CalibrationWrapper(module, calibrator, index))
            balance_inputs(model, layer, module)
    if observed_at_op:
        _ObserverHooks(calibrator, WeightOpObserver(calibrator, observed_at_op)).attach(model)
    for note in result["notes"]:
        logger.warning("%s", note)
    return model
