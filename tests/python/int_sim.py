"""An independent simulation of the integer arithmetic the quantized models
must compute, built only from the float model and the record file:
quantize the input with (scale_d, offset_d), run the layer on integer weights
and an integer bias in float64, multiply by scale_w * scale_d."""

import copy

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_pairs(model, pairs):
    """Fuses (conv, bn) module-name pairs with torch's own helper."""
    model = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _replace(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(model, bn_name, nn.Identity())
    return model


def _replace(model, name, module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _quantize_input(x, scale_d, offset_d, bits=8):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    inv = np.float32(1.0 / np.float64(np.float32(scale_d)))
    xq = torch.round(x.float() * torch.tensor(inv)) + offset_d
    return (torch.clamp(xq, lo, hi) - offset_d).double()


def _int_weight(weight, scales, axis, bits):
    shape = [1] * weight.dim()
    shape[axis] = -1
    s = torch.tensor(np.asarray(scales, dtype=np.float32)).reshape(shape)
    return torch.clamp(torch.round(weight.float() / s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).double()


class _IntegerLayer(nn.Module):
    def __init__(self, module, rec):
        super().__init__()
        self.module = module
        self.rec = rec

    def forward(self, x):
        rec, m = self.rec, self.module
        xq = _quantize_input(x, rec.scale_d, rec.offset_d)
        sw = list(rec.scale_w)
        deq_per = np.float32(np.asarray(sw, dtype=np.float32) * np.float32(rec.scale_d))
        if isinstance(m, nn.AvgPool2d):
            y = F.avg_pool2d(xq, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
            return (y * float(deq_per[0])).float()
        axis = 1 if isinstance(m, nn.ConvTranspose2d) else 0
        # wts_type "INT4" / "INT6" / "INT7" / "INT8"; unset means 8 bits.
        w = _int_weight(m.weight.detach(), sw, axis, int((rec.wts_type or "INT8")[3:]))
        b = None
        if m.bias is not None:
            b = torch.round(m.bias.detach().double() / torch.tensor(deq_per.astype(np.float64)))
        if isinstance(m, nn.Conv2d):
            y = F.conv2d(xq, w, b, m.stride, m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.ConvTranspose2d):
            y = F.conv_transpose2d(xq, w, b, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
        elif isinstance(m, nn.Linear):
            y = F.linear(xq, w, b)
        else:
            raise TypeError(type(m).__name__)
        deq = torch.tensor(deq_per.astype(np.float64))
        if y.dim() == 4:
            deq = deq.reshape(1, -1, 1, 1)
        return (y * deq).float()


def integer_model(float_model, records, fuse):
    """The float model with BN fused and every recorded layer simulated."""
    model = fuse_pairs(float_model, fuse)
    for name, rec in records.items():
        _replace(model, name, _IntegerLayer(model.get_submodule(name), rec))
    return model.eval()
