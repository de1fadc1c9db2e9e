"""The full-INT8 QDQ model: calibration measures the tensors between the
layers (the "<record>.ranges.json" sidecar), save_model quantizes them, and
ONNX Runtime runs residual Adds, squeeze-excite gates, Concat, SiLU and
pooling as integer kernels; the model stays close to float, and AMCT's own
files are the same as with the layer-only QDQ model."""

import collections
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import amct_pytorch as amct


class Residual(nn.Module):
    """A ResNet basic block: the residual Add and its Relu."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(x + self.conv2(self.conv1(x))))


class SqueezeExcite(nn.Module):
    """Global pooling, a Sigmoid gate and the Mul by it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.reduce = nn.Conv2d(8, 4, 1)
        self.expand = nn.Conv2d(4, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(nn.functional.adaptive_avg_pool2d(x, 1)))))
        return self.head(x * gate)


class ConcatSilu(nn.Module):
    """Two branches joined by Concat, SiLU (Sigmoid and Mul) and HardSwish."""

    def __init__(self):
        super().__init__()
        self.left = nn.Conv2d(3, 6, 3, padding=1)
        self.right = nn.Conv2d(3, 6, 1)
        self.mix = nn.Conv2d(12, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        joined = torch.cat([nn.functional.silu(self.left(x)), nn.functional.hardswish(self.right(x))], 1)
        return self.head(nn.functional.silu(self.mix(joined)))


MODELS = {"residual": Residual, "squeeze_excite": SqueezeExcite, "concat_silu": ConcatSilu}
# Integer kernels ONNX Runtime's optimized graph must hold, per model. The
# head writes the graph output, which stays float: ConvInteger, as in the
# layer-only model. HardSwish is HardSigmoid (float) and Mul at opset 11;
# the exporter writes adaptive_avg_pool2d(x, 1) as ReduceMean, which the QDQ
# model has as GlobalAveragePool (quantize_static's models keep it float).
EXPECTED_KERNELS = {
    "residual": {"QLinearConv": 3, "ConvInteger": 1, "QLinearAdd": 1},
    "squeeze_excite": {"QLinearConv": 3, "ConvInteger": 1, "QLinearSigmoid": 1, "QLinearMul": 1,
                       "QLinearGlobalAveragePool": 1, "ReduceMean": 0, "DequantizeLinear": 0},
    "concat_silu": {"QLinearConv": 3, "ConvInteger": 1, "QLinearConcat": 1, "QLinearSigmoid": 2, "QLinearMul": 3},
}


def _build(name, tmp_path):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    data = torch.randn(8, 3, 12, 12)
    config, record = str(tmp_path / "config.json"), str(tmp_path / "record.txt")
    amct.create_quant_config(config, model, data[:1])
    calibration = amct.quantize_model(config, str(tmp_path / "modified.onnx"), record, model, data[:1],
                                      input_names=["input"], output_names=["output"],
                                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                      full_int8_qdq=True)
    with torch.no_grad():
        calibration(data)
    full = amct.save_model(str(tmp_path / "modified.onnx"), record, str(tmp_path / "full"))
    layers = amct.save_model(str(tmp_path / "modified.onnx"), record, str(tmp_path / "layers"), qdq_mode="layers")
    return model, data, record, full, layers


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request, tmp_path_factory):
    return request.param, *_build(request.param, tmp_path_factory.mktemp(request.param))


def _optimized_ops(path, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def test_runtime_runs_the_ops_between_layers_on_integers(built, tmp_path):
    name, _model, _data, _record, full, layers = built
    ops = _optimized_ops(full[2], tmp_path)
    for op, count in EXPECTED_KERNELS[name].items():
        assert ops[op] == count, (op, ops)
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0, ops
    # The layer-only model has each conv feeding an element-wise op as ConvInteger.
    layer_ops = _optimized_ops(layers[2], tmp_path)
    assert layer_ops["ConvInteger"] > 1 and layer_ops["QLinearAdd"] + layer_ops["QLinearMul"] == 0, layer_ops


def _relative_error(got, reference):
    return float(np.linalg.norm(got - reference) / np.linalg.norm(reference))


def test_full_int8_model_stays_close_to_float(built):
    # Stated tolerance: relative L2 error against the float model at most 5%,
    # and at most 1.5x the layer-only model's plus 1% (the extra tensors are
    # rounded to 8 bits once each).
    _name, model, data, _record, full, layers = built
    with torch.no_grad():
        reference = model(data).numpy()
    errors = {}
    for label, paths in (("full", full), ("layers", layers)):
        session = ort.InferenceSession(paths[2], providers=["CPUExecutionProvider"])
        errors[label] = _relative_error(session.run(None, {"input": data.numpy()})[0], reference)
    assert errors["full"] <= 0.05, errors
    assert errors["full"] <= 1.5 * errors["layers"] + 0.01, errors


def test_amct_files_are_those_of_the_layer_only_run(built):
    _name, _model, _data, _record, full, layers = built
    for index in (0, 1):  # deploy, fake-quant
        with open(full[index], "rb") as a, open(layers[index], "rb") as b:
            assert a.read() == b.read(), full[index]


def test_sidecar_lists_the_tensors_runtime_needs(tmp_path):
    _model, data, record, _full, _layers = _build("squeeze_excite", tmp_path)
    with open(record + ".ranges.json", encoding="utf-8") as f:
        ranges = json.load(f)
    assert ranges["version"] == 1
    entries = ranges["ranges"]
    assert [e["role"] for e in entries] == ["tensor"] * len(entries)
    assert all(e["bits"] == 8 and e["scale"] > 0 and -128 <= e["offset"] <= 127 for e in entries)
    # In the order their producers run: the stem's Relu (the pooling's input
    # and the Mul's other one), the pooled mean, the gate's Sigmoid input
    # (expand's result) and output, and the Mul's product.
    model = onnx.load(str(tmp_path / "modified.onnx"))
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    assert [e["layer"] for e in entries] == ["relu", "mean", "conv2d_2", "sigmoid", "mul_14"]
    assert [producers[e["layer"]] for e in entries] == ["Relu", "ReduceMean", "Conv", "Sigmoid", "Mul"]
    # Each grid covers the tensor as Runtime computes it on the calibration
    # batch: IFMR moves the maximum within its search range (0.7 to 1.3).
    for node in model.graph.node:
        for attribute in [a for a in node.attribute if a.name == "op_data_type"]:
            node.attribute.remove(attribute)
    model.graph.output.extend([onnx.ValueInfoProto(name=e["layer"]) for e in entries])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run([e["layer"] for e in entries], {"input": data.numpy()})
    for entry, value in zip(entries, values):
        low, high = entry["scale"] * (-128 - entry["offset"]), entry["scale"] * (127 - entry["offset"])
        assert low <= min(float(value.min()), 0.0) + entry["scale"], entry
        assert 0.7 * float(value.max()) - entry["scale"] <= high <= 1.3 * float(value.max()) + entry["scale"], entry
    # Sigmoid and Relu are never negative: the asymmetric grid starts at 0.
    assert entries[0]["offset"] == -128 and entries[3]["offset"] == -128


class Attention(nn.Module):
    """Single-head self-attention: two MatMuls between activations."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(16, 16) for _ in range(4))

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(1, 2) / 4.0
        return self.out(torch.softmax(scores, -1) @ self.v(x))


def _attention_ops(tmp_path, simple_config):
    tmp_path.mkdir()
    torch.manual_seed(0)
    model = Attention().eval()
    data = torch.randn(4, 10, 16)
    config, record, modified = (str(tmp_path / n) for n in ("config.json", "record.txt", "modified.onnx"))
    if simple_config is None:
        amct.create_quant_config(config, model, data)
    else:
        (tmp_path / "simple.cfg").write_text(simple_config)
        amct.create_quant_config(config, model, data, config_defination=str(tmp_path / "simple.cfg"))
    with open(config, encoding="utf-8") as f:
        written = json.load(f)
    calibration = amct.quantize_model(config, modified, record, model, data, input_names=["input"],
                                      output_names=["output"], full_int8_qdq=True)
    with torch.no_grad():
        calibration(data)
    qdq = amct.save_model(modified, record, str(tmp_path / "net"), outputs=("qdq",))[0]
    session = ort.InferenceSession(qdq, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = model(data).numpy()
    error = _relative_error(session.run(None, {"input": data.numpy()})[0], reference)
    return written, _optimized_ops(qdq, tmp_path), error


def test_attention_matmuls_are_quantized_only_when_the_config_says_so(tmp_path):
    written, ops, error = _attention_ops(tmp_path / "default", None)
    assert "quantize_activation_matmuls" not in written  # AMCT's config as it was
    # Scores and scores x values stay float (Runtime fuses the first with its Transpose).
    assert ops["MatMul"] + ops["FusedMatMul"] == 2, ops
    simple = "quantize_activation_matmuls: true\n"
    written, ops, matmul_error = _attention_ops(tmp_path / "matmuls", simple)
    assert written["quantize_activation_matmuls"] is True
    assert ops["MatMul"] + ops["FusedMatMul"] == 0, ops
    assert ops["MatMulIntegerToFloat"] + ops["QLinearMatMul"] == 2, ops
    # Stated tolerance: 8-bit attention inputs cost at most 3% relative L2 error.
    assert matmul_error <= max(0.03, 2 * error), (matmul_error, error)
