"""The calibration model: the user's modules wrapped so that each forward
hands the layer's input to the C++ calibrator without copying it."""

import logging

import torch
from torch import nn

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
        data = activation.detach()
        if data.dtype != torch.float32:
            data = data.float()
        if data.device.type != "cpu":
            data = data.cpu()
        if not data.is_contiguous():
            data = data.contiguous()
        if self._calibrator.observe(self._index, data):
            logger.info("calibration finished after %d batches; record file written", self._calibrator.batch_num)


def _set_submodule(model, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def build_calibration_model(model, result):
    """Applies the core's results to `model` (a copy made for the caller)."""
    calibrator = result["calibrator"]
    for _conv, batchnorm in result["fused_batchnorms"]:
        _set_submodule(model, batchnorm, nn.Identity())
    for index, layer in enumerate(result["layers"]):
        module = model.get_submodule(layer["name"])
        # New parameters over the core's arrays (not copied): `model` may
        # still share its tensors with the user's model.
        if layer["weight"] is not None:
            old = module.weight
            weight = torch.from_numpy(layer["weight"]).to(old.dtype).reshape(old.shape)
            module.weight = nn.Parameter(weight, requires_grad=old.requires_grad)
            if layer["bias"] is not None:
                bias = torch.from_numpy(layer["bias"]).to(old.dtype)
                module.bias = nn.Parameter(bias, requires_grad=old.requires_grad)
        _set_submodule(model, layer["name"], CalibrationWrapper(module, calibrator, index))
    for note in result["notes"]:
        logger.warning("%s", note)
    return model
