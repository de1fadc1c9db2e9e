"""DMQ balancing on the torch side (docs/amct-reference.md#dmq-balancing):
the wrappers of quantize_preprocess's balancing model, which hand each layer
input to the C++ recorder without copying it, and the input division of the
calibration model. The factor math is in the C++ core."""

import logging

import torch
from torch import nn

from amct_pytorch.module_tools import as_float32_cpu, set_submodule

logger = logging.getLogger("amct_pytorch")


class DMQBalancer(nn.Module):
    """Runs `replaced_module` unchanged (AMCT's attribute name) and reports its
    first input to the recorder until the record has been written."""

    def __init__(self, replaced_module, recorder, index):
        super().__init__()
        self.replaced_module = replaced_module
        self._recorder = recorder
        self._index = index

    def forward(self, *args, **kwargs):
        if not self._recorder.finished and self._recorder.observe(self._index, as_float32_cpu(args[0])):
            logger.info("DMQ balance factors of %d layers written to the record file", self._recorder.layer_count)
        return self.replaced_module(*args, **kwargs)


class BalancedInput(nn.Module):
    """Divides the first input of the wrapped module by the balance factors
    along its input channels: axis 1 of a convolution input (axis 0 when
    unbatched), the last axis of a Linear input."""

    def __init__(self, module, factor, channels_last, weight_rank):
        super().__init__()
        self.module = module
        self.register_buffer("tensor_balance_factor", torch.as_tensor(factor).clone(), persistent=False)
        self._channels_last = channels_last
        self._weight_rank = weight_rank

    def forward(self, x, *args, **kwargs):
        factor = self.tensor_balance_factor.to(device=x.device, dtype=x.dtype)
        if not self._channels_last:
            axis = 1 if x.dim() == self._weight_rank else 0
            shape = [1] * x.dim()
            shape[axis] = -1
            factor = factor.reshape(shape)
        return self.module(x / factor, *args, **kwargs)


def build_balancing_model(model, result):
    """Wraps every DMQ layer of `model` (a copy owned by the caller)."""
    recorder = result["recorder"]
    for index, layer in enumerate(result["layers"]):
        set_submodule(model, layer["name"], DMQBalancer(model.get_submodule(layer["name"]), recorder, index))
    for note in result["notes"]:
        logger.warning("%s", note)
    return model


def balance_inputs(model, layer, module):
    """For a DMQ layer of quantize_model's result: the calibration wrapper
    `model` holds at layer["name"] (around `module`) then reads x / s, so
    the activation calibration sees the balanced input."""
    factor = layer["balance_factor"]
    if factor is None:
        return
    wrapped = model.get_submodule(layer["name"])
    channels_last = layer["module_type"] == "Linear"
    set_submodule(model, layer["name"], BalancedInput(wrapped, factor, channels_last, module.weight.dim()))
