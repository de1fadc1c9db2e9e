"""Per-channel Linear weights (linear_channel_wise, beyond AMCT's schema): the
opt-in reaches the config JSON, the record holds one scale_w per output
channel equal to an independent per-row ARQ, and the fake-quant and QDQ
models compute the integer arithmetic an independent simulation gives, for a
Linear on a 3-D input (MatMul + Add) and one on a 2-D input (Gemm, transB).
Without the opt-in AMCT's files and AMCT's error stay as they were."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import amct_pytorch as amct
from amct_pytorch.compare import compare
from int_sim import integer_model
from record_proto import read_record

LAYERS = ["fc1", "fc2", "head"]
# Integer kernels ONNX Runtime runs a quantized Linear as.
LINEAR_INTEGER_KERNELS = {"QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeMatMul"}


class TokenMlp(nn.Module):
    """fc1 and fc2 act on [batch, tokens, dim] (MatMul + Add), head on the
    pooled [batch, dim] (Gemm). The rows of every weight have very different
    ranges, as transformer weights do, so one scale per tensor costs most of
    the resolution of the small rows."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.fc1 = nn.Linear(16, 24)
        self.fc2 = nn.Linear(24, 16)
        self.head = nn.Linear(16, 6)
        with torch.no_grad():
            for layer in (self.fc1, self.fc2, self.head):
                rows = layer.weight.shape[0]
                layer.weight.mul_(torch.logspace(-1.5, 0.5, rows).reshape(rows, 1))

    def forward(self, x):
        h = self.fc2(torch.relu(self.fc1(x)))
        return self.head(torch.relu(h).mean(dim=1))


def batches(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 7, 16, generator=gen) for _ in range(n)]


class Flow:
    def __init__(self, root, linear_channel_wise=True, config_defination=None):
        self.model = TokenMlp().eval()
        names = ("config.json", "modified.onnx", "record.txt")
        self.config, self.modified, self.record = (str(root / n) for n in names)
        calib = batches(2, seed=1)
        if config_defination:
            amct.create_quant_config(self.config, self.model, calib[0], config_defination=config_defination)
        else:
            amct.create_quant_config(self.config, self.model, calib[0], batch_num=2,
                                     linear_channel_wise=linear_channel_wise)
        model = amct.quantize_model(self.config, self.modified, self.record, self.model, calib[0],
                                    input_names=["input"], output_names=["output"],
                                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        with torch.no_grad():
            for batch in calib:
                model(batch)
        prefix = str(root / "out" / "mlp")
        amct.save_model(self.modified, self.record, prefix)
        self.fake_quant, self.deploy, self.qdq = (prefix + s for s in
                                                  ("_fake_quant_model.onnx", "_deploy_model.onnx", "_qdq_model.onnx"))
        self.test_input = batches(1, seed=9)[0]


@pytest.fixture(scope="module")
def per_channel(tmp_path_factory):
    return Flow(tmp_path_factory.mktemp("linear_pc"))


class FloatBiasLinear(nn.Module):
    """A Linear on an N-D input exports as MatMul + Add, whose bias AMCT
    keeps in float after the dequant (docs/amct-reference.md#bias-quantization)."""

    def __init__(self, integer_layer, bias):
        super().__init__()
        self.inner = integer_layer
        self.bias = bias

    def forward(self, x):
        return self.inner(x) + self.bias


def simulation(model, records):
    sim = integer_model(model, records, [])
    for name in ("fc1", "fc2"):
        layer = sim.get_submodule(name)
        bias = layer.module.bias.detach().clone()
        layer.module.bias = None
        setattr(sim, name, FloatBiasLinear(layer, bias))
    return sim


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def per_row_arq(weight):
    """ARQ's symmetric max scale for each row of a torch [out, in] weight."""
    w = weight.detach().double().numpy().astype(np.float32)
    hi, lo = w.max(axis=1), w.min(axis=1)
    divisor = np.where(np.abs(lo) > np.abs(hi), np.float32(128), np.float32(127))
    return np.maximum(np.abs(hi), np.abs(lo)) / divisor


def test_config_carries_the_opt_in(per_channel):
    config = json.load(open(per_channel.config))
    assert config["linear_channel_wise"] is True
    assert list(config)[:6] == ["version", "batch_num", "activation_offset", "do_fusion", "skip_fusion_layers",
                                "linear_channel_wise"]
    for name in LAYERS:
        assert config[name]["weight_quant_params"] == {"num_bits": 8, "channel_wise": True,
                                                       "wts_algo": "arq_quantize"}, name


def test_default_config_stays_amct_s(tmp_path):
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, TokenMlp().eval(), batches(1, seed=1)[0])
    written = json.load(open(config))
    assert "linear_channel_wise" not in written
    assert all(written[name]["weight_quant_params"]["channel_wise"] is False for name in LAYERS)


def test_record_has_one_scale_per_output_channel(per_channel):
    records = read_record(per_channel.record)
    for name in LAYERS:
        module = per_channel.model.get_submodule(name)
        rec = records[name]
        assert len(rec.scale_w) == module.out_features, name
        np.testing.assert_allclose(list(rec.scale_w), per_row_arq(module.weight), rtol=1e-6, err_msg=name)
        assert list(rec.offset_w) == [0] * module.out_features


def test_fake_quant_and_qdq_match_the_integer_simulation(per_channel):
    sim = simulation(per_channel.model, read_record(per_channel.record))
    with torch.no_grad():
        expected = sim(per_channel.test_input).numpy()
    span = float(expected.max() - expected.min())
    for path in (per_channel.fake_quant, per_channel.qdq):
        got = run_ort(path, per_channel.test_input)
        assert np.max(np.abs(got - expected)) <= 1e-4 * span, path


def test_output_models_carry_per_channel_factors(per_channel, tmp_path):
    deploy = {t.name: t for t in onnx.load(per_channel.deploy).graph.initializer}
    nodes = {n.name: n for n in onnx.load(per_channel.deploy).graph.node}
    # head is a Gemm (transB=1 from the exporter, 0 after GemmTransB), fc1/fc2 MatMuls.
    assert nodes["head"].op_type == "Gemm" and nodes["fc1"].op_type == "MatMul"
    for name in LAYERS:
        assert list(deploy[name + ".dequant.param"].dims) == [per_channel.model.get_submodule(name).out_features]
    qdq = onnx.load(per_channel.qdq).graph
    qdq_inits = {t.name: t for t in qdq.initializer}
    for node in qdq.node:
        if node.name in {name + ".weight_dequant" for name in LAYERS}:
            layer = node.name.split(".")[0]
            axis = [a.i for a in node.attribute if a.name == "axis"]
            # The QDQ model keeps the exporter's layouts: the Gemm's [out, in]
            # (transB=1), the MatMuls' [in, out].
            assert axis == [0 if layer == "head" else 1], node.name
            assert list(qdq_inits[node.input[1]].dims) == [per_channel.model.get_submodule(layer).out_features]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(per_channel.qdq, options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert sum(op in LINEAR_INTEGER_KERNELS for op in ops) == len(LAYERS), ops
    report = compare(per_channel.fake_quant, per_channel.qdq, {"input": per_channel.test_input.numpy()})
    assert report["outputs"]["output"]["qdq_vs_fake_quant"]["cosine"] >= 0.9999


def test_per_channel_is_closer_to_float_than_per_tensor(per_channel, tmp_path):
    per_tensor = Flow(tmp_path, linear_channel_wise=False)
    with torch.no_grad():
        reference = per_channel.model(per_channel.test_input).numpy().ravel()

    def error(path):
        return float(np.linalg.norm(run_ort(path, per_channel.test_input).ravel() - reference))

    assert error(per_channel.fake_quant) < 0.5 * error(per_tensor.fake_quant)


def test_simple_config_field_and_int4_weights(tmp_path):
    simple = tmp_path / "pc.cfg"
    simple.write_text("batch_num: 2\nlinear_channel_wise: true\ncommon_config { arq_quantize { quant_bits: 4 } }\n")
    flow = Flow(tmp_path, config_defination=str(simple))
    assert json.load(open(flow.config))["linear_channel_wise"] is True
    records = read_record(flow.record)
    for name in LAYERS:
        assert len(records[name].scale_w) == flow.model.get_submodule(name).out_features
        assert records[name].wts_type == "INT4"
    sim = simulation(flow.model, records)
    with torch.no_grad():
        expected = sim(flow.test_input).numpy()
    got = run_ort(flow.fake_quant, flow.test_input)
    assert np.max(np.abs(got - expected)) <= 1e-4 * float(expected.max() - expected.min())
    # The deploy model packs two INT4 values per byte along Cin.
    deploy = {t.name: t for t in onnx.load(flow.deploy).graph.initializer}
    assert list(deploy["fc1.weight"].dims) == [8, 24]


def test_ada_quantize_rounds_per_channel(tmp_path):
    simple = tmp_path / "ada.cfg"
    simple.write_text("batch_num: 2\nlinear_channel_wise: true\n"
                      "common_config { ada_quantize { num_iteration: 200 } }\n")
    flow = Flow(tmp_path, config_defination=str(simple))
    config = json.load(open(flow.config))
    records = read_record(flow.record)
    for name in LAYERS:
        assert config[name]["weight_quant_params"]["channel_wise"] is True
        assert len(records[name].scale_w) == flow.model.get_submodule(name).out_features
    report = compare(flow.fake_quant, flow.qdq, {"input": flow.test_input.numpy()})
    assert report["outputs"]["output"]["qdq_vs_fake_quant"]["cosine"] >= 0.9999


def test_channel_wise_linear_without_the_opt_in_keeps_amct_s_error(tmp_path):
    model = TokenMlp().eval()
    x = batches(1, seed=1)[0]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": 1, "fc1": {"activation_quant_params": {},
                                                        "weight_quant_params": {"channel_wise": True}}}))
    with pytest.raises(ValueError) as error:
        amct.quantize_model(str(config), str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model, x)
    assert str(error.value) == (f"quant config '{config}': The channel_wise must be False for layer type Linear "
                                "in layer fc1")
    with pytest.raises(TypeError, match="linear_channel_wise"):
        amct.create_quant_config(str(config), model, x, linear_channel_wise=1)
