"""Every module whose class is, or derives from, a quantizable class is either
quantized or reported with the true reason it stays float."""

import logging

import torch
from torch import nn

import amct_pytorch as amct
from record_proto import read_record


class MyConv3d(nn.Conv3d):
    """A subclass, like torchvision's Conv3DSimple."""


class FunctionalAttention(nn.Module):
    """Swin-style: the Linear modules' weights are used through F.linear."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        q, k, v = nn.functional.linear(x, self.qkv.weight, self.qkv.bias).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        x = nn.functional.linear(attention @ v, self.proj.weight, self.proj.bias)
        return self.head(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = MyConv3d(2, 4, 3)
        self.plain = nn.Conv3d(4, 4, 1)
        self.skipped = nn.Conv3d(4, 4, 1)

    def forward(self, x):
        return self.skipped(self.plain(self.sub(x)))


def notes_of(model, x, tmp_path, skip_layers=None, caplog=None, quantize_subclasses=True):
    """The notes quantize_model logs, and the layers its record holds."""
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x, skip_layers=skip_layers, quantize_subclasses=quantize_subclasses)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        amct.quantize_model(config, modified, record, model, x)
    return [r.getMessage() for r in caplog.records if r.name == "amct_pytorch"], set(read_record(record))


def test_subclasses_and_disabled_layers_are_reported(tmp_path, caplog):
    x = torch.randn(1, 2, 5, 5, 5)
    notes, layers = notes_of(Net().eval(), x, tmp_path, skip_layers=["skipped"], caplog=caplog)
    assert layers == {"sub", "plain"}
    assert any("layer 'skipped' stays in float" in n and "does not enable it" in n for n in notes), notes
    assert not any("'plain'" in n or "'sub'" in n for n in notes), notes
    notes, layers = notes_of(Net().eval(), x, tmp_path, caplog=caplog, quantize_subclasses=False)
    assert layers == {"plain", "skipped"}
    assert any("module 'sub' stays in float: its class MyConv3d derives from Conv3d, and quantize_subclasses is false"
               in n for n in notes), notes


def test_layers_used_through_their_weight_are_quantized(tmp_path, caplog):
    notes, layers = notes_of(FunctionalAttention().eval(), torch.randn(2, 5, 8), tmp_path, caplog=caplog)
    assert layers == {"qkv", "proj", "head"}
    assert notes == []
