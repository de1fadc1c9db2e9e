"""One small model per structure the torchvision zoo exercises, through the
whole flow: the fake-quant and QDQ models track the float model on held-out
inputs, and every layer is either quantized or reported."""

import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import amct_pytorch as amct
from models import _randomize_batchnorm, tiny_resnet
from record_proto import read_record
from test_atc_opset import MobileBlockNet
from test_constant_folding import Net3d


class InceptionNet(nn.Module):
    """Parallel branches of different kernels joined by Concat."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.pool_proj = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(8, 4, 1))
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([self.b1(x), self.b3(x), self.pool_proj(x)], dim=1)
        return self.fc(torch.relu(x).mean((2, 3)))


class DenseNet(nn.Module):
    """Each layer reads the Concat of all earlier feature maps."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(8 + 4 * i), nn.ReLU(), nn.Conv2d(8 + 4 * i, 4, 3,
                                                                                                     padding=1))
                                     for i in range(3)])
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.fc(torch.cat(features, dim=1).mean((2, 3)))


class TransformerWithFunctionalLinear(nn.Module):
    """nn.MultiheadAttention plus a Swin-style attention that calls F.linear
    with module weights; its `dropout` is a Dropout module, as in BERT (a name
    that nn.LSTM/GRU give a float)."""

    def __init__(self, dim=16):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        x = x + self.dropout(self.mha(x, x, x, need_weights=False)[0])
        q, k, v = nn.functional.linear(self.norm(x), self.qkv.weight, self.qkv.bias).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1)
        x = x + nn.functional.linear(attention @ v, self.proj.weight, self.proj.bias)
        return x + self.fc2(nn.functional.gelu(self.fc1(x)))


def _seeded(factory, seed=0):
    torch.manual_seed(seed)
    return _randomize_batchnorm(factory(), seed).eval()


# name: (model factory, input shape, quantized layers, layers reported as float)
ARCHITECTURES = {
    "residual": (lambda: tiny_resnet(), (3, 16, 16),
                 {"stem.0", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
                  "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0", "fc"}, set()),
    "depthwise-se-hardswish": (lambda: _seeded(MobileBlockNet), (3, 16, 16),
                               {"stem.0", "dw", "se_reduce", "se_expand", "branch_a", "branch_b", "head", "fc"},
                               set()),
    "inception-concat": (lambda: _seeded(InceptionNet), (3, 12, 12),
                         {"stem", "b1", "b3.0", "b3.2", "pool_proj.1", "fc"}, set()),
    "dense-concat": (lambda: _seeded(DenseNet), (3, 12, 12),
                     {"stem", "layers.0.2", "layers.1.2", "layers.2.2", "fc"}, set()),
    # mha.out_proj, qkv and proj run only through their weights (MultiheadAttention, F.linear).
    "transformer-functional-linear": (lambda: _seeded(TransformerWithFunctionalLinear), (6, 16),
                                      {"fc1", "fc2", "mha.out_proj", "qkv", "proj"}, set()),
    "conv3d-without-bias": (lambda: _seeded(Net3d), (3, 6, 6, 6), {"layer1.0", "layer2"}, set()),
}


def centered_cosine(reference, other):
    """Cosine of the input-dependent part: the mean over the batch removed."""
    a = (reference - reference.mean(0)).ravel()
    b = (other - other.mean(0)).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_through_the_whole_flow(name, tmp_path, caplog):
    factory, shape, quantized, noted = ARCHITECTURES[name]
    model = factory()
    gen = torch.Generator().manual_seed(7)
    batches = [torch.randn(8, *shape, generator=gen) for _ in range(3)]
    config, modified, record = (str(tmp_path / n) for n in ("config.json", "modified.onnx", "record.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=3)
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["input"],
                                    output_names=["output"], dynamic_axes={"input": {0: "batch"},
                                                                           "output": {0: "batch"}})
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    prefix = str(tmp_path / "out" / "net")
    amct.save_model(modified, record, prefix)

    assert set(read_record(record)) == quantized
    notes = [r.getMessage() for r in caplog.records if r.name == "amct_pytorch"]
    reported = {layer for layer in noted if any(f"'{layer}'" in note for note in notes)}
    assert reported == noted, notes

    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        reference = model(x).numpy()
    for kind in ("fake_quant", "qdq"):
        cosine = centered_cosine(reference, run_ort(f"{prefix}_{kind}_model.onnx", x.numpy()))
        assert cosine >= 0.98, (kind, cosine)
