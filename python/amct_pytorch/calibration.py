"""The calibration model: the user's modules wrapped so that each forward
hands the layer's input to the C++ calibrator without copying it."""

import logging

import torch
from torch import nn

from amct_pytorch.dmq import balance_inputs
from amct_pytorch.module_tools import as_float32_cpu, set_submodule

logger = logging.getLogger("amct_pytorch")


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
            self._observe(args[0])
        return self.sub_module(*args, **kwargs)

    def _observe(self, activation):
        if self._calibrator.observe(self._index, as_float32_cpu(activation)):
            logger.info("calibration finished after %d batches; record file written", self._calibrator.batch_num)


def build_calibration_model(model, result):
    """Applies the core's results to `model` (a copy owned by the caller)."""
    calibrator = result["calibrator"]
    for _conv, batchnorm in result["fused_batchnorms"]:
        set_submodule(model, batchnorm, nn.Identity())
    for index, layer in enumerate(result["layers"]):
        module = model.get_submodule(layer["name"])
        with torch.no_grad():
            if layer["weight"] is not None:
                weight = torch.from_numpy(layer["weight"]).to(module.weight.dtype)
                module.weight.copy_(weight.reshape(module.weight.shape))
            if layer["bias"] is not None:
                bias = torch.from_numpy(layer["bias"]).to(module.weight.dtype)
                if module.bias is None:
                    module.bias = nn.Parameter(bias, requires_grad=module.weight.requires_grad)
                else:
                    module.bias.copy_(bias)
        set_submodule(model, layer["name"], CalibrationWrapper(module, calibrator, index))
        balance_inputs(model, layer, module)
    for note in result["notes"]:
        logger.warning("%s", note)
    return model
