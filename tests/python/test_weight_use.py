"""Layers that run without their module being called as the exact class:
weights used through F.linear, nn.MultiheadAttention's out_proj, subclasses
that pad in their forward. They are quantized when the exported op is the
class's own op on the weight parameter, with calibration reading that op's
input; otherwise they stay float with the exact reason."""

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import amct_pytorch as amct
from amct_pytorch.calibration import WeightOpObserver
from record_proto import read_record
from test_architectures import centered_cosine, run_ort


class FunctionalFc(nn.Module):
    """fc runs as F.linear(x, self.fc.weight, self.fc.bias), Swin-style."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 12)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        return self.head(torch.relu(F.linear(x, self.fc.weight, self.fc.bias)))


class CalledFc(FunctionalFc):
    """The same computation with fc called as a module."""

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


class SamePadConv(nn.Conv2d):
    """EfficientNet's Conv2dStaticSamePadding: pads in forward, then F.conv2d."""

    def __init__(self, cin, cout, kernel):
        super().__init__(cin, cout, kernel, bias=False)
        self.static_padding = nn.ZeroPad2d((1, 2, 1, 2))

    def forward(self, x):
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class SubclassNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SamePadConv(3, 6, 4)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class PaddedPlainNet(nn.Module):
    """SubclassNet's computation from exact classes: the padding is a module of its own."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 1, 2))
        self.conv = nn.Conv2d(3, 6, 4, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(self.pad(x)))).mean((2, 3)))


class AttentionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(x + self.mha(x, x, x, need_weights=False)[0])


class UnfollowableWeights(nn.Module):
    """Weights used in ways a quantized layer cannot follow."""

    def __init__(self):
        super().__init__()
        self.t = nn.Linear(8, 8)
        self.sliced = nn.Linear(8, 8)
        self.tied = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = x @ self.t.weight.t()
        x = F.linear(x, self.sliced.weight[:, :4].repeat(1, 2), self.sliced.bias)
        x = F.linear(x, self.tied.weight) + F.linear(x, self.tied.weight)
        return self.head(x)


def _copy_weights(source, target):
    target.load_state_dict(source.state_dict(), strict=False)
    return target


def run_flow(model, shape, tmp_path, caplog, quantize_subclasses=True, edit_config=None):
    """The whole flow on three batches; returns (record text, notes, prefix)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(8, *shape, generator=gen) for _ in range(3)]
    config, modified, record = (str(tmp_path / n) for n in ("config.json", "modified.onnx", "record.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=3, quantize_subclasses=quantize_subclasses)
    if edit_config:
        with open(config, encoding="utf-8") as f:
            content = json.load(f)
        edit_config(content)
        with open(config, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=4, separators=(",", ":"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["input"],
                                    output_names=["output"],
                                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        with torch.no_grad():
            for batch in batches:
                calib(batch)
    notes = [r.getMessage() for r in caplog.records if r.name == "amct_pytorch"]
    prefix = str(tmp_path / "out" / "net")
    amct.save_model(modified, record, prefix)
    with open(record, encoding="utf-8") as f:
        return f.read(), notes, prefix


def assert_outputs_track_float(model, shape, prefix):
    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        reference = model(x).numpy()
    for kind in ("fake_quant", "qdq"):
        cosine = centered_cosine(reference, run_ort(f"{prefix}_{kind}_model.onnx", x.numpy()))
        assert cosine >= 0.98, (kind, cosine)


def test_functional_linear_gets_the_record_of_the_called_module(tmp_path, caplog):
    torch.manual_seed(0)
    functional = FunctionalFc().eval()
    called = _copy_weights(functional, CalledFc().eval())
    record, notes, prefix = run_flow(functional, (5, 8), tmp_path / "functional", caplog)
    expected, _, _ = run_flow(called, (5, 8), tmp_path / "called", caplog)
    assert set(read_record(str(tmp_path / "functional" / "record.txt"))) == {"fc", "head"}
    assert record == expected
    assert not any("'fc'" in n for n in notes), notes
    assert_outputs_track_float(functional, (5, 8), prefix)


def test_subclass_padding_in_forward_is_calibrated_on_the_padded_input(tmp_path, caplog):
    torch.manual_seed(0)
    subclass = SubclassNet().eval()
    for bn in (subclass.bn,):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    plain = _copy_weights(subclass, PaddedPlainNet().eval())
    record, notes, prefix = run_flow(subclass, (3, 9, 9), tmp_path / "subclass", caplog)
    expected, _, _ = run_flow(plain, (3, 9, 9), tmp_path / "plain", caplog)
    assert set(read_record(str(tmp_path / "subclass" / "record.txt"))) == {"conv", "fc"}
    # Same BN-fused weights, and scale_d from the padded input, as the exact classes give.
    assert record == expected
    assert not any("'conv'" in n for n in notes), notes
    assert_outputs_track_float(subclass, (3, 9, 9), prefix)


def test_exact_class_switch_keeps_the_subclass_float_with_a_note(tmp_path, caplog):
    torch.manual_seed(0)
    model = SubclassNet().eval()
    _, notes, _ = run_flow(model, (3, 9, 9), tmp_path, caplog, quantize_subclasses=False)
    with open(tmp_path / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    assert config["quantize_subclasses"] is False and "conv" not in config
    assert set(read_record(str(tmp_path / "record.txt"))) == {"fc"}
    assert ("module 'conv' stays in float: its class SamePadConv derives from Conv2d, and quantize_subclasses is "
            "false (AMCT's behaviour: only the exact classes Conv2d, Linear, ... are quantized)") in notes


class FunctionalOnly(nn.Module):
    """No layer is called: its calibration model holds no CalibrationWrapper."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return F.linear(x, self.fc.weight, self.fc.bias)


def test_a_calibration_model_observed_at_ops_is_refused(tmp_path):
    model = FunctionalOnly().eval()
    x = torch.randn(2, 5, 8)
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x)
    calib = amct.quantize_model(config, modified, record, model, x)
    with pytest.raises(RuntimeError, match="the model is a calibration model .*pass the original float model"):
        amct.quantize_model(config, modified, record, calib, x)


def test_amct_config_without_the_subclass_leaves_it_float(tmp_path, caplog):
    """A config AMCT wrote lists only exact classes: the subclass is a layer the config does not enable."""
    torch.manual_seed(0)
    _, notes, _ = run_flow(SubclassNet().eval(), (3, 9, 9), tmp_path, caplog,
                           edit_config=lambda config: config.pop("conv"))
    assert set(read_record(str(tmp_path / "record.txt"))) == {"fc"}
    assert any(n.startswith("layer 'conv' stays in float: config_file") and "does not enable it" in n
               for n in notes), notes


def test_multihead_attention_out_proj_is_quantized(tmp_path, caplog):
    torch.manual_seed(0)
    model = AttentionNet().eval()
    record, notes, prefix = run_flow(model, (6, 16), tmp_path, caplog)
    entries = read_record(str(tmp_path / "record.txt"))
    assert set(entries) == {"mha.out_proj", "head"}
    assert "scale_d" in str(entries["mha.out_proj"])
    assert not any("out_proj" in n for n in notes), notes
    assert_outputs_track_float(model, (6, 16), prefix)


class RecordingCalibrator:
    """Stands in for the C++ calibrator to see what the observer feeds it."""

    finished = False
    batch_num = 1

    def __init__(self):
        self.fed = []

    def observe(self, index, data):
        self.fed.append((index, data.clone()))
        return False

    def batches_seen(self, index):
        return sum(1 for i, _ in self.fed if i == index)


def test_observer_feeds_the_exact_out_proj_input_and_keeps_the_output():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 16)
    calibrator = RecordingCalibrator()
    with torch.no_grad():
        expected_output = mha(x, x, x, need_weights=False)[0]
        with WeightOpObserver(calibrator, [(7, "mha.out_proj", mha.out_proj.weight)]):
            output = mha(x, x, x, need_weights=False)[0]
        # Reference out_proj input, computed by hand: heads of softmax(q k^T / sqrt(d)) v, side by side.
        q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
        heads = [torch.softmax(qh @ kh.transpose(1, 2) / np.sqrt(8), dim=-1) @ vh
                 for qh, kh, vh in zip(q.split(8, -1), k.split(8, -1), v.split(8, -1))]
        reference = torch.cat(heads, dim=-1)
    assert [index for index, _ in calibrator.fed] == [7]
    fed = calibrator.fed[0][1]
    # The slow path feeds (length, batch, dim); the values are the same rows.
    torch.testing.assert_close(fed.transpose(0, 1), reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(output, expected_output, rtol=0, atol=1e-6)


def test_weights_used_in_ways_a_layer_cannot_follow_stay_float_with_the_reason(tmp_path, caplog):
    torch.manual_seed(0)
    model = UnfollowableWeights().eval()
    x = torch.randn(4, 5, 8)
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x)
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        amct.quantize_model(config, modified, record, model, x)
    notes = [r.getMessage() for r in caplog.records if r.name == "amct_pytorch"]
    assert set(read_record(record)) == {"head"}
    assert ("layer 't' stays in float: forward() does not call the module; node 'node_matmul' (MatMul) comes from "
            "aten.matmul, not from Linear's own op aten.linear (F.linear); a layer used through its weight is "
            "quantized only when its class's own op reads the weight parameter itself") in notes
    sliced = next(n for n in notes if n.startswith("layer 'sliced'"))
    assert "(Slice) reads its weight, and is not a Linear op taking it as its weight input" in sliced, sliced
    tied = next(n for n in notes if n.startswith("layer 'tied'"))
    assert "its weight is read by 2 nodes" in tied and "quantized only when one op reads it" in tied, tied
