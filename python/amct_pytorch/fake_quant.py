"""The torch models accuracy_based_auto_calibration evaluates: quantized layers
whose input is fake-quantized by the C++ core with the record's factors, and
probes that hand a layer's float and fake-quant outputs to the core's
sensitivity measure. No arithmetic on the data happens here."""

import copy

import torch
from torch import nn

from amct_pytorch import _amct
from amct_pytorch.module_tools import as_float32_cpu


class FakeQuantLayer(nn.Module):
    """Runs the wrapped layer (fake-quantized weight, bias on the INT32 grid)
    on its input fake-quantized with scale_d / offset_d."""

    def __init__(self, sub_module, quant):
        super().__init__()
        self.sub_module = sub_module
        self._scale = quant["scale"]
        self._offset = quant["offset"]
        self._bits = quant["bits"]

    def forward(self, activation, *args, **kwargs):
        data = as_float32_cpu(activation)
        quantized = torch.empty_like(data)
        _amct.fake_quantize_activation(data, quantized, self._scale, self._offset, self._bits)
        quantized = quantized.to(device=activation.device, dtype=activation.dtype)
        return self.sub_module(quantized, *args, **kwargs)


def fake_quant_layer(calibration_module, layer, quant):
    """A FakeQuantLayer over a copy of `calibration_module`, the layer of the
    calibration model (its weight fake-quantized except ConvTranspose's)."""
    module = copy.deepcopy(calibration_module)
    with torch.no_grad():
        if layer["fake_quant_weight"] is not None:
            weight = torch.from_numpy(layer["fake_quant_weight"]).to(module.weight.dtype)
            module.weight.copy_(weight.reshape(module.weight.shape))
        if quant["bias"] is not None:
            module.bias.copy_(torch.from_numpy(quant["bias"]).to(module.bias.dtype))
    return FakeQuantLayer(module, quant)


class SensitivityProbe(nn.Module):
    """Behaves as the calibration model's layer; for the first batch_num
    batches it also runs the float layer and the fake-quant layer on the same
    input and feeds both outputs to the core."""

    def __init__(self, sub_module, reference, fake_quant, sensitivity, index, batch_num):
        super().__init__()
        self.sub_module = sub_module
        self.reference = reference
        self.fake_quant = fake_quant
        self._sensitivity = sensitivity
        self._index = index
        self._batch_num = batch_num

    def forward(self, *args, **kwargs):
        output = self.sub_module(*args, **kwargs)
        if self._sensitivity.batches(self._index) < self._batch_num:
            with torch.no_grad():
                reference = as_float32_cpu(self.reference(*args, **kwargs))
                quantized = as_float32_cpu(self.fake_quant(*args, **kwargs))
            self._sensitivity.add_batch(self._index, reference, quantized)
        return output
