"""convert_opset on models exported by torch's dynamo exporter (opset 20):
each converts down to 11, 13 and 15 and back up from 11 to 13, passes the
ONNX checker, and computes the same outputs in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from amct_pytorch import _amct

IR_VERSION = {11: 6, 13: 7, 15: 8}


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """BN, ReLU6, Hardswish, SiLU, MaxPool, Upsample (nearest and bilinear),
    Concat, chunk, mean over dims, AdaptiveAvgPool, flatten, permute, reshape."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = nn.Hardswish()
        self.act3 = nn.SiLU()
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        y = self.pool(self.act3(self.act2(self.conv2(x))))
        a, b = torch.chunk(torch.cat([self.up(y), self.up2(y)], 1), 2, dim=1)
        z = torch.cat([b, a], 1)
        z = z * torch.sigmoid(z.mean(dim=(2, 3), keepdim=True))
        g = torch.flatten(self.gap(z), 1)
        p = z.permute(0, 2, 3, 1).reshape(z.shape[0], -1, 16).sum(1)
        return self.fc(g + p)


class Block(nn.Module):
    """LayerNorm, nn.MultiheadAttention, F.scaled_dot_product_attention,
    softmax, and both GELU forms."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.heads = heads
        self.ff = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, d))
        self.ff2 = nn.Sequential(nn.Linear(d, 32), nn.GELU(approximate="tanh"), nn.Linear(32, d))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln2(x)).split(d, dim=-1)
        q, k, v = (u.view(b, t, self.heads, d // self.heads).transpose(1, 2) for u in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        s = (torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + o + s
        return x + self.ff(x) + self.ff2(x)


class ConvLSTM(nn.Module):
    """Conv1d + LSTM, and a log-softmax over a non-last axis."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x)).transpose(1, 2)
        out, _ = self.lstm(y)
        return torch.log_softmax(self.fc(out), dim=1)


class Misc(nn.Module):
    """Pad, GroupNorm, InstanceNorm, Mish, >= and <=, where/clamp, cumsum,
    argmax, a softmax over channels and a resize to a fixed size with
    align_corners."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.group_norm = nn.GroupNorm(2, 4)
        self.norm = nn.InstanceNorm2d(4, affine=True)
        self.mish = nn.Mish()

    def forward(self, x):
        y = self.mish(self.norm(F.pad(self.group_norm(self.conv(x)), (1, 2, 0, 1))))
        keep = (y >= 0.1) & (y <= 1.0)
        y = torch.where(keep, y, torch.clamp(y, -0.5, 0.5))
        y = y + torch.cumsum(y, dim=3) * 0.01
        index = torch.argmax(y, dim=1, keepdim=True).float()
        y = torch.cat([y, index], 1).softmax(dim=1)
        return F.interpolate(y, size=(7, 9), mode="bilinear", align_corners=True)


class Triangle(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, x):
        return torch.triu(self.proj(x))


MODELS = {
    "mlp": (MLP, (2, 16)),
    "cnn": (CNN, (2, 3, 8, 8)),
    "block": (Block, (2, 5, 16)),
    "conv_lstm": (ConvLSTM, (2, 4, 7)),
    "misc": (Misc, (2, 3, 8, 8)),
}


def export(model, shape, dynamic_shapes=None):
    torch.manual_seed(0)
    args = (torch.randn(*shape),)
    return torch.onnx.export(model.eval(), args, dynamo=True, optimize=False,
                             dynamic_shapes=dynamic_shapes).model_proto


def convert(model, target):
    return onnx.load_from_string(_amct.convert_opset(model.SerializeToString(), target))


def run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def default_opset(model):
    return [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request):
    factory, shape = MODELS[request.param]
    torch.manual_seed(0)
    model = export(factory(), shape)
    assert default_opset(model) == [20]
    rng = np.random.default_rng(7)
    feed = {i.name: rng.standard_normal(shape).astype(np.float32) for i in model.graph.input}
    return request.param, model, feed, run(model, feed)


def assert_same_outputs(expected, actual):
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        assert want.shape == got.shape
        span = float(want.max() - want.min())
        assert span > 0
        assert float(np.abs(want - got).max()) <= 1e-5 * span


@pytest.mark.parametrize("target", [11, 13, 15])
def test_down_conversion_keeps_outputs(exported, target):
    _, model, feed, expected = exported
    converted = convert(model, target)
    assert default_opset(converted) == [target]
    assert converted.ir_version == IR_VERSION[target]
    onnx.checker.check_model(converted, full_check=True)
    assert_same_outputs(expected, run(converted, feed))
    # Layer nodes keep their names.
    names = {n.name for n in converted.graph.node}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul", "LSTM", "BatchNormalization"):
            assert node.name in names


def test_up_conversion_from_11(exported):
    _, model, feed, expected = exported
    up = convert(convert(model, 11), 13)
    assert default_opset(up) == [13]
    assert up.ir_version == 7
    onnx.checker.check_model(up, full_check=True)
    assert_same_outputs(expected, run(up, feed))


def test_down_conversion_removes_new_ops(exported):
    name, model, _, _ = exported
    ops11 = {n.op_type for n in convert(model, 11).graph.node}
    assert not ops11 & {"LayerNormalization", "Gelu", "HardSwish", "CastLike", "Mish"}
    if name == "block":
        assert {"ReduceMean", "Erf", "Tanh"} <= ops11
    if name == "cnn":
        assert "HardSigmoid" in ops11


def test_dynamic_batch_converts_to_11():
    # With a dynamic batch the reshapes of attention read run-time dimensions.
    model = export(Block(), (3, 5, 16), dynamic_shapes=({0: torch.export.Dim("batch", min=2, max=64)},))
    converted = convert(model, 11)
    onnx.checker.check_model(converted, full_check=True)
    feed = {"x": np.random.default_rng(5).standard_normal((7, 5, 16)).astype(np.float32)}
    assert_same_outputs(run(model, feed), run(converted, feed))


def test_trilu_has_no_form_below_14():
    model = export(Triangle(), (3, 6))
    assert "Trilu" in {n.op_type for n in model.graph.node}
    assert default_opset(convert(model, 14)) == [14]
    with pytest.raises(ValueError) as error:
        convert(model, 11)
    message = str(error.value)
    assert "Trilu" in message
    assert "lowest opset that works is 14" in message
    trilu = next(n for n in model.graph.node if n.op_type == "Trilu")
    assert f"node '{trilu.name}'" in message


def test_softmax_over_middle_axis_up_from_11():
    # An opset-11 Softmax over axis 1 of a 3-D input normalizes the flattened rows.
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3, 4])
    node = onnx.helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 11)], ir_version=6)
    feed = {"x": np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)}
    rows = feed["x"].reshape(2, 12)
    want = (np.exp(rows) / np.exp(rows).sum(1, keepdims=True)).reshape(2, 3, 4)
    np.testing.assert_allclose(run(model, feed)[0], want, rtol=1e-5)
    up = convert(model, 13)
    onnx.checker.check_model(up, full_check=True)
    assert [n.op_type for n in up.graph.node] == ["Shape", "Flatten", "Softmax", "Reshape"]
    np.testing.assert_allclose(run(up, feed)[0], want, rtol=1e-5)


def test_bad_target_is_a_value_error():
    model = export(MLP(), (2, 16))
    with pytest.raises(ValueError, match="opset 10"):
        convert(model, 10)
