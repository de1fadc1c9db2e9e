"""A8W4 and INT6/INT7 weights through the whole flow: create_quant_config from
a simple config in the style of AMCT's ptq_a8w4 sample, quantize_model,
calibration, save_model. The record carries AMCT's wts_type, the weights lie
in the N-bit range, the fake-quant model computes the integer arithmetic an
independent simulation gives, the deploy model packs INT4 weights two per
byte along Cin, and the QDQ model computes what the fake-quant model does."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import amct_pytorch as amct
from amct_pytorch.compare import compare
from int_sim import fuse_pairs, integer_model
from record_proto import read_record

# The A8W4 simple config: 4-bit ARQ weights (per channel where the layer type
# defaults to it), IFMR 8-bit activations. AMCT lowers layers that cannot
# pack INT4 (grouped convs, odd Cin) to 8 bits.
A8W4_SIMPLE_CONFIG = """\
batch_num : 2
activation_offset : true
common_config : {
    arq_quantize : { quant_bits : 4 }
    ifmr_quantize : { search_range_start : 0.7 search_range_end : 1.3 search_step : 0.01 }
}
"""

ASCEND_OPS = {"AscendQuant", "AscendDequant"}
INT4_LAYERS = {"conv1", "conv2", "deconv", "fc"}


class A8W4Net(nn.Module):
    """Conv2d+BN+ReLU -> depthwise Conv2d -> Conv2d -> ConvTranspose2d -> AvgPool2d -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.conv2 = nn.Conv2d(8, 6, 1)
        self.deconv = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(self.dw(x)))
        x = self.pool(self.deconv(x))
        return self.fc(torch.flatten(x, 1))


def a8w4_net():
    torch.manual_seed(0)
    model = A8W4Net()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.1, 0.1)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


class Flow:
    """The outputs of create_quant_config -> quantize_model -> calibration -> save_model."""

    def __init__(self, root, model, shape, config=None, simple_config=None):
        self.model, self.shape = model, shape
        self.config = str(root / "config.json")
        self.modified, self.record = str(root / "modified.onnx"), str(root / "record.txt")
        prefix = str(root / "out" / "net")
        gen = torch.Generator().manual_seed(3)
        batches = [torch.randn(4, *shape, generator=gen) for _ in range(2)]
        self.test_input = torch.randn(6, *shape, generator=gen)
        if config is None:
            simple = root / "a8w4.cfg"
            simple.write_text(simple_config)
            amct.create_quant_config(self.config, model, batches[0], config_defination=str(simple))
        else:
            with open(self.config, "w") as f:
                f.write(config)
        calib = amct.quantize_model(self.config, self.modified, self.record, model, batches[0],
                                    input_names=["input"], output_names=["output"],
                                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        with torch.no_grad():
            for batch in batches:
                calib(batch)
        amct.save_model(self.modified, self.record, prefix)
        self.fake_quant = prefix + "_fake_quant_model.onnx"
        self.deploy = prefix + "_deploy_model.onnx"
        self.qdq = prefix + "_qdq_model.onnx"


@pytest.fixture(scope="module")
def a8w4(tmp_path_factory):
    return Flow(tmp_path_factory.mktemp("a8w4"), a8w4_net(), (4, 8, 8), simple_config=A8W4_SIMPLE_CONFIG)


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def unpack_int4(packed, axis):
    """The signed nibbles of AMCT's packing, the low one first, back along `axis`."""
    low = (packed.astype(np.int16) << 12 >> 12).astype(np.int8)
    high = (packed.astype(np.int16) << 8 >> 12).astype(np.int8)
    pairs = np.stack([low, high], axis=axis + 1)
    shape = list(packed.shape)
    shape[axis] *= 2
    return pairs.reshape(shape)


def test_simple_config_gives_4_bit_weights_where_they_can_be_packed(a8w4):
    config = json.load(open(a8w4.config))
    bits = {name: layer["weight_quant_params"]["num_bits"] for name, layer in config.items()
            if isinstance(layer, dict) and "weight_quant_params" in layer}
    # dw is grouped: AMCT's simple config lowers it to 8 bits.
    assert bits == {"conv1": 4, "dw": 8, "conv2": 4, "deconv": 4, "fc": 4, "pool": 4}


def test_record_has_wts_type_and_4_bit_arq_scales(a8w4):
    records = read_record(a8w4.record)
    assert list(records) == ["conv1", "dw", "conv2", "deconv", "pool", "fc"]
    fused = fuse_pairs(a8w4.model, [("conv1", "bn")])
    for name, rec in records.items():
        assert rec.act_type == "INT8"
        if name == "pool":
            assert not rec.HasField("wts_type") and list(rec.scale_w) == [1.0]
            continue
        bits = 4 if name in INT4_LAYERS else 8
        assert rec.wts_type == f"INT{bits}", name
        w = fused.get_submodule(name).weight.detach().double()
        if name == "deconv":
            w = w.transpose(0, 1)
        rows = w.reshape(w.shape[0], -1) if name != "fc" else w.reshape(1, -1)
        hi, lo = rows.max(dim=1).values, rows.min(dim=1).values
        # Symmetric ARQ: the divisor is 2^(b-1) when the most negative value dominates, else 2^(b-1) - 1.
        divisor = torch.where(lo.abs() > hi.abs(), 2.0 ** (bits - 1), 2.0 ** (bits - 1) - 1)
        np.testing.assert_allclose(list(rec.scale_w), (torch.maximum(hi.abs(), lo.abs()) / divisor).numpy(), rtol=1e-6)


def test_all_outputs_pass_the_checker(a8w4):
    onnx.checker.check_model(onnx.load(a8w4.fake_quant), full_check=True)
    onnx.checker.check_model(onnx.load(a8w4.qdq), full_check=True)
    # The modified ONNX carries AMCT's op_data_type attribute on its layers.
    modified = onnx.load(a8w4.modified)
    for node in modified.graph.node:
        kept = [a for a in node.attribute if a.name != "op_data_type"]
        del node.attribute[:]
        node.attribute.extend(kept)
    onnx.checker.check_model(modified, full_check=True)
    # AMCT puts AscendQuant/AscendDequant in the default domain, where the
    # checker knows no such ops; in a domain of their own the rest is checked.
    deploy = copy.deepcopy(onnx.load(a8w4.deploy))
    assert {n.op_type for n in deploy.graph.node} >= ASCEND_OPS
    for node in deploy.graph.node:
        if node.op_type in ASCEND_OPS:
            node.domain = "ascend.test"
    deploy.opset_import.add(domain="ascend.test", version=1)
    onnx.checker.check_model(deploy)


def test_fake_quant_matches_integer_simulation(a8w4):
    records = read_record(a8w4.record)
    sim = integer_model(a8w4.model, records, [("conv1", "bn")])
    with torch.no_grad():
        expected = sim(a8w4.test_input).numpy()
    got = run_ort(a8w4.fake_quant, a8w4.test_input.numpy())
    span = float(expected.max() - expected.min())
    assert np.max(np.abs(got - expected)) <= 1e-4 * span
    with torch.no_grad():
        reference = a8w4.model(a8w4.test_input).numpy()
    assert np.corrcoef(got.ravel(), reference.ravel())[0, 1] >= 0.95


def test_deploy_packs_the_fake_quant_integers_along_cin(a8w4):
    deploy, fake = initializers(a8w4.deploy), initializers(a8w4.fake_quant)
    # Pack axis: Conv 1, ConvTranspose 0, Gemm 0 (save_model stores it [Cin, Cout]).
    for name, axis in {"conv1": 1, "conv2": 1, "deconv": 0, "fc": 0}.items():
        packed, integers = deploy[name + ".weight"], fake[name + ".weight"]
        assert packed.dtype == np.int8 and integers.dtype == np.float32
        assert -8 <= integers.min() and integers.max() <= 7 and np.all(integers == np.round(integers))
        expected_shape = list(integers.shape)
        expected_shape[axis] //= 2
        assert list(packed.shape) == expected_shape, name
        np.testing.assert_array_equal(unpack_int4(packed, axis), integers.astype(np.int8), err_msg=name)
    # The 8-bit depthwise layer is stored as it is.
    np.testing.assert_array_equal(deploy["dw.weight"], fake["dw.weight"].astype(np.int8))
    assert np.abs(fake["dw.weight"]).max() > 7


def test_qdq_holds_int4_integers_in_int8_and_agrees_with_fake_quant(a8w4):
    qdq, fake = initializers(a8w4.qdq), initializers(a8w4.fake_quant)
    for name in INT4_LAYERS:
        weight = qdq[name + ".weight"]
        assert weight.dtype in (np.int8, np.uint8), name
        values = weight.astype(np.int16) - (128 if weight.dtype == np.uint8 else 0)
        assert -8 <= values.min() and values.max() <= 7, name
    np.testing.assert_array_equal(qdq["conv2.weight"], fake["conv2.weight"].astype(np.int8))
    report = compare(a8w4.fake_quant, a8w4.qdq, {"input": a8w4.test_input.numpy()})
    out = report["outputs"]["output"]["qdq_vs_fake_quant"]
    assert out["cosine"] >= 0.9999 and out["within_step"] >= 0.999


def test_save_model_accepts_an_int4_record_written_by_amct(a8w4, tmp_path):
    # The record as AMCT's text_format writes it (fields in field-number
    # order, shortest float32 text), from our record's values.
    records = read_record(a8w4.record)
    lines = []
    for name, rec in records.items():
        lines += ["record {", f'  key: "{name}"', "  value {", f"    scale_d: {np.float32(rec.scale_d)}",
                  f"    offset_d: {rec.offset_d}"]
        lines += [f"    scale_w: {np.float32(s)}" for s in rec.scale_w]
        lines += ["    offset_w: 0" for _ in rec.scale_w]
        lines += ['    act_type: "INT8"']
        if rec.HasField("wts_type"):
            lines += [f'    wts_type: "{rec.wts_type}"']
        lines += ["  }", "}"]
    amct_record = tmp_path / "amct_record.txt"
    amct_record.write_text("\n".join(lines) + "\n")
    # A record AMCT wrote comes without amct's fingerprint sidecar.
    amct.save_model(a8w4.modified, str(amct_record), str(tmp_path / "amct" / "net"))
    ours = initializers(a8w4.deploy)
    theirs = initializers(str(tmp_path / "amct" / "net_deploy_model.onnx"))
    for name in INT4_LAYERS:
        np.testing.assert_array_equal(theirs[name + ".weight"], ours[name + ".weight"])


def test_odd_cin_with_4_bit_weights_is_refused_by_quantize_model(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    config = ('{"version": 1, "batch_num": 1, "activation_offset": true, "do_fusion": true, '
              '"0": {"quant_enable": true, "activation_quant_params": {"num_bits": 8}, '
              '"weight_quant_params": {"num_bits": 4, "channel_wise": true, "wts_algo": "arq_quantize"}}}')
    config_file = tmp_path / "config.json"
    config_file.write_text(config)
    with pytest.raises(RuntimeError) as error:
        amct.quantize_model(str(config_file), str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model,
                            torch.randn(1, 3, 4, 4))
    assert str(error.value) == (
        f"config_file '{config_file}', layer '0': INT4 weights are packed two per byte along the input-channel "
        "axis (axis 1 of the Conv weight, dims [4, 3, 1, 1]), whose size 3 is odd; set num_bits 8 in its "
        "weight_quant_params (AMCT's simple config does this itself)")
    assert not os.path.exists(tmp_path / "m.onnx") and not os.path.exists(tmp_path / "r.txt")


def test_odd_cin_in_an_int4_record_is_refused_by_save_model(tmp_path):
    # A record written elsewhere (AMCT quantizes such a layer and fails only here).
    model = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    config_file = tmp_path / "config.json"
    config_file.write_text('{"version": 1, "0": {"quant_enable": true, "activation_quant_params": {"num_bits": 8}}}')
    modified, record = str(tmp_path / "m.onnx"), tmp_path / "r.txt"
    calib = amct.quantize_model(str(config_file), modified, str(record), model, torch.randn(1, 3, 4, 4))
    with torch.no_grad():
        calib(torch.randn(1, 3, 4, 4))
    record.write_text(record.read_text().replace('wts_type: "INT8"', 'wts_type: "INT4"'))
    os.remove(str(record) + ".amct.json")  # AMCT writes no fingerprint sidecar
    with pytest.raises(RuntimeError) as error:
        amct.save_model(modified, str(record), str(tmp_path / "out" / "net"))
    assert str(error.value) == (
        f"record file '{record}', layer '0': INT4 weights are packed two per byte along the input-channel axis "
        "(axis 1 of the Conv weight, dims [4, 3, 1, 1]), whose size 3 is odd; quantize this layer with 8 bits")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("bits", [6, 7])
def test_int6_int7_weights_end_to_end(bits, tmp_path):
    model = a8w4_net()
    simple = A8W4_SIMPLE_CONFIG.replace("quant_bits : 4", f"quant_bits : {bits}")
    flow = Flow(tmp_path, model, (4, 8, 8), simple_config=simple)
    records = read_record(flow.record)
    # 6/7 bits are for Conv2d only: other types are lowered to 8.
    conv2d = {"conv1", "dw", "conv2"}
    for name, rec in records.items():
        if name != "pool":
            assert rec.wts_type == (f"INT{bits}" if name in conv2d else "INT8"), name
    deploy, fake = initializers(flow.deploy), initializers(flow.fake_quant)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    for name in conv2d:
        w = deploy[name + ".weight"]
        assert w.dtype == np.int8 and lo <= w.min() and w.max() <= hi, name
        assert w.min() == lo or w.max() == hi, name  # ARQ uses the full range
        np.testing.assert_array_equal(w, fake[name + ".weight"].astype(np.int8))
    sim = integer_model(model, records, [("conv1", "bn")])
    with torch.no_grad():
        expected = sim(flow.test_input).numpy()
    got = run_ort(flow.fake_quant, flow.test_input.numpy())
    assert np.max(np.abs(got - expected)) <= 1e-4 * float(expected.max() - expected.min())
    onnx.checker.check_model(onnx.load(flow.fake_quant), full_check=True)
    onnx.checker.check_model(onnx.load(flow.qdq), full_check=True)


def test_int4_qdq_latency_benchmark_runs_and_int8_storage_is_exact():
    # benchmarks/int4_qdq_latency.py, which chose the QDQ model's INT8 storage of INT4 weights: it runs, and INT8 and
    # native INT4 storage compute exactly the graph's numbers in ONNX Runtime.
    script = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "int4_qdq_latency.py")
    proc = subprocess.run([sys.executable, script, "--runs", "3", "--threads", "1", "--batch", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if "weights:" in line}
    assert set(rows) == {"int8", "int4", "float"}
    assert "max |output - unoptimized| 0 " in rows["int8"] and "max |output - unoptimized| 0 " in rows["int4"]
