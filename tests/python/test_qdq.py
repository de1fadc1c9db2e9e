"""The QDQ model of save_model: a valid standard ONNX model that ONNX Runtime
runs with integer kernels for every quantized layer and that computes what
the fake-quant model computes."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import amct_pytorch as amct
from amct_pytorch.compare import compare

# ONNX Runtime kernels that compute a quantized layer on integers.
INTEGER_KERNELS = {"QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "QLinearAveragePool",
                   "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
FLOAT_LAYER_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "AveragePool"}


def optimized_ops(path, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


def test_qdq_model_is_standard_onnx(quantized):
    model = onnx.load(quantized.qdq)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}
    assert model.opset_import[0].version >= 13
    inits = {t.name: t for t in model.graph.initializer}
    layers = amct._amct.fake_quant_layers(quantized.fake_quant)
    for layer in layers:
        if layer + ".weight" in inits:
            assert inits[layer + ".weight"].data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8), layer
        if layer + ".bias" in inits:
            assert inits[layer + ".bias"].data_type == onnx.TensorProto.INT32, layer
    # dynamic batch kept
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_onnx_runtime_runs_every_quantized_layer_on_integers(quantized, tmp_path):
    ops = optimized_ops(quantized.qdq, tmp_path)
    layers = amct._amct.fake_quant_layers(quantized.fake_quant)
    assert not FLOAT_LAYER_OPS & set(ops), ops
    assert sum(op in INTEGER_KERNELS for op in ops) == len(layers), ops


def test_qdq_agrees_with_fake_quant(quantized):
    x = quantized.test_input.numpy()
    report = compare(quantized.fake_quant, quantized.qdq, {"input": x})
    out = report["outputs"]["output"]["qdq_vs_fake_quant"]
    assert out["cosine"] >= 0.9999
    assert out["within_step"] >= 0.999
    assert set(report["layers"]) == set(amct._amct.fake_quant_layers(quantized.fake_quant))
    for layer, entry in report["layers"].items():
        assert entry["qdq_vs_fake_quant"]["cosine"] >= 0.9999, layer
        assert entry["qdq_vs_fake_quant"]["within_step"] >= 0.999, layer


def test_qdq_close_to_float_and_batch_one(quantized):
    session = ort.InferenceSession(quantized.qdq, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": quantized.test_input.numpy()})[0]
    with torch.no_grad():
        reference = quantized.model(quantized.test_input).numpy()
    cos = float(np.dot(got.ravel(), reference.ravel()) / np.linalg.norm(got) / np.linalg.norm(reference))
    assert cos >= 0.99
    assert session.run(None, {"input": np.zeros((1, *quantized.shape), np.float32)})[0].shape[0] == 1


def test_parity_metrics_values():
    ref = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    other = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    m = amct._amct.parity_metrics(ref, other, "t")
    assert m["max_abs_error"] == 1.0
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(14.0))
    assert m["cosine"] == pytest.approx(17.0 / np.sqrt(14.0 * 21.0))
    assert m["step"] == pytest.approx(3.0 / 255)
    assert m["within_step"] == 0.75
    assert amct._amct.parity_metrics(ref, ref, "t")["sqnr_db"] == float("inf")
    with pytest.raises(ValueError, match="'t'|t: the arrays have 4 and 3"):
        amct._amct.parity_metrics(ref, ref[:3].copy(), "t")


def test_outputs_option(quantized, tmp_path):
    prefix = str(tmp_path / "only")
    written = amct.save_model(quantized.modified, quantized.record, prefix, outputs=("qdq",))
    assert written == [prefix + "_qdq_model.onnx"]
    assert not os.path.exists(prefix + "_deploy_model.onnx")
    with pytest.raises(ValueError, match="unknown output 'int8'"):
        amct.save_model(quantized.modified, quantized.record, prefix, outputs=("int8",))


def test_compare_cli_writes_json(quantized, tmp_path):
    np.save(tmp_path / "x.npy", quantized.test_input.numpy())
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "amct_pytorch.compare", "--fake-quant", quantized.fake_quant, "--qdq", quantized.qdq,
         "--input", f"input={tmp_path / 'x.npy'}", "--json", str(out)], capture_output=True, text=True, check=True)
    assert "qdq_vs_fake_quant" in result.stdout
    report = json.loads(out.read_text())
    assert report["outputs"]["output"]["qdq_vs_fake_quant"]["cosine"] >= 0.9999


class Relu6PadNet(torch.nn.Module):
    """Convolutions joined by ReLU6 (Clip(0, 6)) and ZeroPad2d (Pad, constant 0), as in EfficientNet-Lite."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3)
        self.act1 = torch.nn.ReLU6()
        self.pad = torch.nn.ZeroPad2d((0, 1, 0, 1))
        self.conv2 = torch.nn.Conv2d(8, 8, 3, 2, groups=8)
        self.act2 = torch.nn.ReLU6()
        self.conv3 = torch.nn.Conv2d(8, 4, 1)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = self.conv2(self.pad(self.act1(self.conv1(x))))
        return self.fc(torch.flatten(self.conv3(self.act2(x)), 1))


def test_convolutions_through_clip_and_zero_padding_become_qlinearconv(tmp_path):
    model = Relu6PadNet().eval()
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(4, 3, 10, 10, generator=gen) for _ in range(2)]
    config, modified, record = (str(tmp_path / n) for n in ("config.json", "modified.onnx", "record.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["input"],
                                output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    prefix = str(tmp_path / "net")
    amct.save_model(modified, record, prefix)
    ops = optimized_ops(prefix + "_qdq_model.onnx", tmp_path)
    # conv1 -> Clip -> Pad -> conv2 -> Clip -> conv3 requantized; conv3 -> Flatten -> fc
    assert ops.count("QLinearConv") == 3 and "ConvInteger" not in ops, ops
    # A Clip left runs on the UINT8 integers between the QLinearConvs, with
    # bounds quantized with the consumer's factors.
    optimized = onnx.load(str(tmp_path / "optimized.onnx")).graph
    producers = {out: node for node in optimized.node for out in node.output}
    for node in optimized.node:
        if node.op_type in ("Clip", "Pad"):
            source = producers.get(node.input[0])
            assert source is not None and source.op_type != "DequantizeLinear", (node.name, source)
    qdq = onnx.load(prefix + "_qdq_model.onnx").graph
    inits = {t.name: t for t in qdq.initializer}
    # A ReLU6 whose consumer's grid ends at or below 6 changes no UINT8 value
    # and becomes an Identity (ONNX Runtime removes it); the others clamp.
    relu6 = {n.name for n in onnx.load(modified).graph.node if n.op_type == "Clip"}
    assert len(relu6) == 2
    kinds = {n.name: n.op_type for n in qdq.node if n.name in relu6}
    assert set(kinds.values()) <= {"Clip", "Identity"} and len(kinds) == 2, kinds
    # The ZeroPad2d (right and bottom by 1) is folded into conv2's own pads.
    assert not any(n.op_type == "Pad" for n in qdq.node) and "Pad" not in ops, ops
    conv2 = [n for n in qdq.node if n.op_type == "Conv" and any(a.name == "group" and a.i == 8 for a in n.attribute)]
    assert len(conv2) == 1
    assert [list(a.ints) for a in conv2[0].attribute if a.name == "pads"] == [[0, 0, 1, 1]]
    # The shapes the export declared for the padded tensors went with the
    # padding: strict shape inference finds nothing to contradict (ONNX
    # Runtime warned "Error merging shape info" on EfficientNet-Lite0).
    onnx.shape_inference.infer_shapes(onnx.load(prefix + "_qdq_model.onnx"), strict_mode=True)
    for node in qdq.node:
        if node.op_type == "Clip":
            assert all(inits[name].data_type == onnx.TensorProto.UINT8 for name in node.input[1:]), node.name
            bounds = [int(onnx.numpy_helper.to_array(inits[name])) for name in node.input[1:]]
            assert bounds != [0, 255], node.name
    assert ops.count("Clip") == list(kinds.values()).count("Clip"), ops
    x = torch.randn(6, 3, 10, 10, generator=gen).numpy()
    report = compare(prefix + "_fake_quant_model.onnx", prefix + "_qdq_model.onnx", {"input": x})
    out = report["outputs"]["output"]["qdq_vs_fake_quant"]
    assert out["cosine"] >= 0.9999 and out["within_step"] >= 0.999, out
