"""amct compare's per-layer parity on the structures of RegNet-Y and
Inception-v3 (issue 11 item 3): grouped convs, squeeze-excite, residual adds,
BN folded into the convs, parallel branches with an average-pool branch
joined by Concat. Each layer's QDQ result must be matched with its
fake-quant result, whichever of the QDQ output forms the layer took
(requantized onto its consumer's grid, the integer ConvInteger form, a
requantized AveragePool), and the two must agree per layer."""

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import amct_pytorch as amct
from amct_pytorch.compare import compare
from models import _randomize_batchnorm


def conv_bn(cin, cout, kernel, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class YBlock(nn.Module):
    """torchvision's RegNet-Y block: 1x1 conv-BN-ReLU, grouped 3x3
    conv-BN-ReLU, squeeze-excite, 1x1 conv-BN, residual add, ReLU."""

    def __init__(self, cin, cout, stride, group_width=8):
        super().__init__()
        self.a = conv_bn(cin, cout, 1)
        self.b = conv_bn(cout, cout, 3, stride, cout // group_width)
        self.se = SqueezeExcite(cout, max(1, cin // 4))
        self.c = conv_bn(cout, cout, 1, relu=False)
        self.proj = conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return torch.relu(shortcut + self.c(self.se(self.b(self.a(x)))))


class RegNetY(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.blocks = nn.Sequential(YBlock(16, 24, 2), YBlock(24, 24, 1), YBlock(24, 48, 2), YBlock(48, 48, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class InceptionA(nn.Module):
    """torchvision's InceptionA: 1x1, 1x1-5x5, 1x1-3x3-3x3 and an average
    pool followed by a 1x1, joined by Concat. The pool is F.avg_pool2d as in
    torchvision, or an nn.AvgPool2d layer that AMCT quantizes."""

    def __init__(self, cin, pool_features, pool_module):
        super().__init__()
        self.b1 = conv_bn(cin, 16, 1)
        self.b5_1 = conv_bn(cin, 12, 1)
        self.b5_2 = conv_bn(12, 16, 5)
        self.b3_1 = conv_bn(cin, 16, 1)
        self.b3_2 = conv_bn(16, 24, 3)
        self.b3_3 = conv_bn(24, 24, 3)
        self.pool = nn.AvgPool2d(3, 1, 1) if pool_module else None
        self.bp = conv_bn(cin, pool_features, 1)

    def forward(self, x):
        pooled = self.pool(x) if self.pool is not None else F.avg_pool2d(x, 3, 1, 1)
        return torch.cat([self.b1(x), self.b5_2(self.b5_1(x)), self.b3_3(self.b3_2(self.b3_1(x))), self.bp(pooled)], 1)


class Inception(nn.Module):
    def __init__(self, pool_module=False):
        super().__init__()
        self.stem1 = conv_bn(3, 16, 3, 2)
        self.stem2 = conv_bn(16, 32, 3)
        self.maxpool = nn.MaxPool2d(3, 2)
        self.m1 = InceptionA(32, 8, pool_module)
        self.m2 = InceptionA(64, 16, pool_module)
        self.fc = nn.Linear(72, 10)

    def forward(self, x):
        x = self.maxpool(self.stem2(self.stem1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.m2(self.m1(x)), 1), 1))


def _run_flow(factory, tmp_path):
    torch.manual_seed(0)  # the model's weights do not depend on the tests run before
    model = _randomize_batchnorm(factory(), 0).eval()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, 32, 32, generator=gen) for _ in range(3)]
    config, modified, record = (str(tmp_path / n) for n in ("config.json", "modified.onnx", "record.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=3)
    calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["input"],
                                output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    prefix = str(tmp_path / "net")
    amct.save_model(modified, record, prefix)
    x = torch.randn(16, 3, 32, 32, generator=gen).numpy()
    return prefix + "_fake_quant_model.onnx", prefix + "_qdq_model.onnx", x


# name: (factory, {layer: tensor compare reads in the QDQ model} for one
# layer of each QDQ output form). The fake-quant model always gives
# "<layer>.dequant.output0".
STRUCTURES = {
    "regnet-y": (RegNetY, {
        # requantized onto the consumer's grid (ReLU between): compared
        # before that step, which clips at the ReLU's zero
        "blocks.0.a.0": "blocks.0.a.0.output",
        "blocks.0.se.fc1": "blocks.0.se.fc1.output",
        # ConvInteger form (into the SE's mean and Mul, Sigmoid, the
        # residual Add): compared after "<layer>.dequant", at the tensor
        # the exporter named
        "blocks.0.b.0": None, "blocks.0.se.fc2": None, "blocks.0.c.0": None, "blocks.0.proj.0": None,
        "fc": "output"}),
    "inception": (Inception, {
        "stem1.0": "stem1.0.output",
        # ReLU -> MaxPool -> three convs and F.avg_pool2d, which is no layer
        "stem2.0": None,
        "m1.b3_1.0": "m1.b3_1.0.output",
        "m1.b1.0": None, "m1.bp.0": None, "m2.b3_3.0": None}),
    "inception-avgpool-layer": (lambda: Inception(pool_module=True), {
        "m1.pool": "m1.pool.output",  # AveragePool requantized onto bp's grid
        "m2.pool": "m2.pool.output"}),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_per_layer_qdq_matches_fake_quant(name, tmp_path):
    factory, expected_tensors = STRUCTURES[name]
    fake_quant, qdq, x = _run_flow(factory, tmp_path)
    layers = amct._amct.fake_quant_layers(fake_quant)
    fq_tensors = dict(amct._amct.expose_layer_outputs(fake_quant, layers)[1])
    qdq_tensors = dict(amct._amct.expose_layer_outputs(qdq, layers)[1])
    assert set(fq_tensors) == set(qdq_tensors) == set(layers)
    graph = onnx.load(qdq).graph
    nodes = {node.name: node for node in graph.node}
    producers = {out: node for node in graph.node for out in node.output}
    for layer, tensor in expected_tensors.items():
        assert fq_tensors[layer] == (tensor if tensor == "output" else layer + ".dequant.output0"), layer
        if tensor is None:
            assert nodes[layer].op_type == "ConvInteger", layer
            assert producers[qdq_tensors[layer]].name == layer + ".dequant", (layer, qdq_tensors[layer])
        else:
            assert qdq_tensors[layer] == tensor, layer

    report = compare(fake_quant, qdq, {"input": x})
    assert set(report["layers"]) == set(layers)
    worst = min(entry["qdq_vs_fake_quant"]["cosine"] for entry in report["layers"].values())
    assert worst >= 0.9999, worst
    for layer, entry in report["layers"].items():
        assert entry["qdq_vs_fake_quant"]["within_step"] >= 0.999, (layer, entry)
        # On the fake-quant model's input every layer computes the same
        # numbers up to float32 rounding of the dequantization.
        same_input = entry["qdq_vs_fq_same_input"]
        assert same_input["within_step"] == 1.0 and same_input["cosine"] >= 0.999999, (layer, same_input)
    assert report["outputs"]["output"]["qdq_vs_fake_quant"]["cosine"] >= 0.9999


class ConvIntoConvAndAdd(nn.Module):
    """conv1's result feeds conv2 directly and a residual Add, so conv1 takes
    the ConvInteger form and conv2 quantizes the tensor that carries conv1's
    original name: in the fake-quant model that name is conv1's accumulator."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv1(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(torch.relu(y + self.conv2(y)), 1), 1))


def test_a_layer_fed_by_another_layers_result_runs_on_the_dequantized_result(tmp_path):
    fake_quant, qdq, x = _run_flow(ConvIntoConvAndAdd, tmp_path)
    layers = amct._amct.fake_quant_layers(fake_quant)
    _, _, fed = amct._amct.feed_reference_inputs(qdq, fake_quant, layers)
    graph = onnx.load(qdq).graph
    conv2_input = next(node for node in graph.node if node.name == "conv2.input_quant").input[0]
    assert (conv2_input + ".reference", "conv1.dequant.output0") in fed
    entry = compare(fake_quant, qdq, {"input": x})["layers"]["conv2"]["qdq_vs_fq_same_input"]
    assert entry["within_step"] == 1.0 and entry["cosine"] >= 0.999999, entry


def test_same_input_pair_points_at_the_layer_that_computes_differently(tmp_path):
    fake_quant, qdq, x = _run_flow(RegNetY, tmp_path)
    # A third of one layer's output channels with their INT8 weights
    # negated: that layer, and through it the layers below, differ end to
    # end; on the fake-quant model's input only that layer differs.
    model = onnx.load(qdq)
    weight = next(t for t in model.graph.initializer if t.name == "blocks.1.a.0.weight")
    values = onnx.numpy_helper.to_array(weight).copy()
    assert values.dtype == np.int8
    values[:8] = -values[:8]
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    broken = str(tmp_path / "broken_qdq_model.onnx")
    onnx.save(model, broken)
    report = compare(fake_quant, broken, {"input": x})["layers"]
    differs = {layer for layer, entry in report.items() if entry["qdq_vs_fq_same_input"]["within_step"] < 0.99}
    assert differs == {"blocks.1.a.0"}, differs
    for layer in ("blocks.1.b.0", "blocks.1.se.fc1", "blocks.1.c.0", "blocks.2.a.0", "blocks.2.proj.0"):
        assert report[layer]["qdq_vs_fake_quant"]["within_step"] < 0.99, (layer, report[layer])
