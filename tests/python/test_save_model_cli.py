"""`amct save-model` end to end on a hand-built modified ONNX and a hand-written
record: the fake-quant model must run in ONNX Runtime and compute exactly the
integer arithmetic simulated here in NumPy; the deploy model must have the
expected nodes and integer initializers."""

import glob
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def has_save_model(cli):
    """An older installed amct may predate the save-model command."""
    try:
        result = subprocess.run([cli, "save-model", "--help"], capture_output=True, text=True, check=False)
        return result.returncode == 0 and "--save-path" in result.stdout
    except OSError:
        return False


def find_cli():
    if os.environ.get("AMCT_CLI"):
        return os.environ["AMCT_CLI"]
    built = [p for p in glob.glob(os.path.join(REPO, "build", "*", "amct")) if os.access(p, os.X_OK)]
    newest_build = max(built, key=os.path.getmtime) if built else None
    for candidate in (shutil.which("amct"), newest_build):
        if candidate and has_save_model(candidate):
            return candidate
    return None


CLI = find_cli()
pytestmark = pytest.mark.skipif(CLI is None, reason="amct CLI not built (set AMCT_CLI or build build/<dir>/amct)")

F32 = np.float32


# ---- NumPy reference layers (float64 accumulation) ----

def conv2d(x, w, stride=1, pad=0, groups=1):
    n, _, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, cout, ho, wo))
    cout_g = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g:(g + 1) * cin_g]
        ws = w[g * cout_g:(g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
                out[:, g * cout_g:(g + 1) * cout_g] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


def conv_transpose2d(x, w, stride, groups):
    n, cin, h, wd = x.shape
    _, cout_g, kh, kw = w.shape
    cin_g = cin // groups
    out = np.zeros((n, cout_g * groups, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for g in range(groups):
        xs = x[:, g * cin_g:(g + 1) * cin_g]
        ws = w[g * cin_g:(g + 1) * cin_g]
        for i in range(kh):
            for j in range(kw):
                out[:, g * cout_g:(g + 1) * cout_g, i:i + stride * h:stride, j:j + stride * wd:stride] += np.einsum(
                    "nchw,co->nohw", xs, ws[:, :, i, j])
    return out


def pad_hw(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def avg_pool(x, k):
    n, c, h, w = x.shape
    return x[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))


def channel_axis(v, rank):
    return np.asarray(v).reshape((1, -1) + (1,) * (rank - 2))


# ---- the model: conv1+relu -> dw -> deconv (groups 2) -> pad+pool -> flatten -> fc ----

class Layer:
    def __init__(self, name, ints=None, scale_w=None, bias=None):
        self.name, self.ints, self.bias = name, ints, bias
        self.scale_w = np.asarray(scale_w if scale_w is not None else [1.0], F32)


def make_layers(rng):
    def ints(shape):
        return rng.integers(-127, 128, size=shape).astype(np.int64)

    conv1 = Layer("conv1", ints((8, 3, 3, 3)), rng.uniform(0.002, 0.01, 8), rng.normal(0, 0.1, 8).astype(F32))
    dw = Layer("dw", ints((8, 1, 3, 3)), rng.uniform(0.002, 0.01, 8))
    deconv = Layer("deconv", ints((8, 2, 2, 2)), rng.uniform(0.002, 0.01, 4), rng.normal(0, 0.1, 4).astype(F32))
    pool = Layer("pool")
    fc = Layer("fc", ints((10, 144)), [0.004], rng.normal(0, 0.1, 10).astype(F32))
    return conv1, dw, deconv, pool, fc


def deconv_channel_scale(layer):
    # W [Cin=8, Cout/g=2, k, k], group 2: element (ci, j) is output channel (ci // 4) * 2 + j.
    idx = (np.arange(8)[:, None] // 4) * 2 + np.arange(2)[None, :]
    return layer.scale_w[idx][:, :, None, None]


def float_weights(conv1, dw, deconv, fc):
    return {
        "conv1.weight": (conv1.ints * conv1.scale_w[:, None, None, None]).astype(F32),
        "dw.weight": (dw.ints * dw.scale_w[:, None, None, None]).astype(F32),
        "deconv.weight": (deconv.ints * deconv_channel_scale(deconv)).astype(F32),
        "fc.weight": (fc.ints * fc.scale_w[0]).astype(F32),
    }


def build_model(layers):
    conv1, dw, deconv, _, fc = layers
    weights = float_weights(conv1, dw, deconv, fc)
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(conv1.bias, "conv1.bias"), numpy_helper.from_array(deconv.bias, "deconv.bias"),
              numpy_helper.from_array(fc.bias, "fc.bias"),
              numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pool_pad.pads")]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], op_data_type="float"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "dw.weight"], ["d1"], name="dw", group=8, pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], op_data_type="float"),
        helper.make_node("ConvTranspose", ["d1", "deconv.weight", "deconv.bias"], ["t1"], name="deconv", group=2,
                         strides=[2, 2], kernel_shape=[2, 2], op_data_type="float"),
        helper.make_node("Pad", ["t1", "pool_pad.pads"], ["p1"], name="pool_pad"),
        helper.make_node("AveragePool", ["p1"], ["a1"], name="pool", kernel_shape=[3, 3], strides=[3, 3],
                         op_data_type="float"),
        helper.make_node("Flatten", ["a1"], ["f1"], name="flatten"),
        helper.make_node("Gemm", ["f1", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1,
                         op_data_type="float"),
    ]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


# ---- integer simulation; with calibrate=True it runs in float and records min/max ----

def quantize(x, scale_d, offset_d):
    """q - offset_d, with q = clip(round_half_even(x * (1/scale_d)) + offset_d)."""
    multiplier = F32(1.0 / float(scale_d))
    q = np.round(x.astype(F32) * multiplier) + offset_d
    return (np.clip(q, -128, 127) - offset_d).astype(np.float64)


def simulate(x, layers, factors=None):
    """factors: {layer: (scale_d, offset_d)}; None runs the float model and returns the input ranges."""
    conv1, dw, deconv, pool, fc = layers
    ranges = {}

    def run(layer, inp, op):
        if factors is None:
            ranges[layer.name] = (float(inp.min()), float(inp.max()))
            weight = None if layer.ints is None else layer.ints * (
                deconv_channel_scale(layer) if layer is deconv else
                layer.scale_w.reshape((-1,) + (1,) * (layer.ints.ndim - 1)))
            out = op(inp.astype(np.float64), weight)
            return out + (0 if layer.bias is None else channel_axis(layer.bias, out.ndim))
        scale_d, offset_d = factors[layer.name]
        deq = (layer.scale_w * F32(scale_d)).astype(F32).astype(np.float64)
        out = op(quantize(inp, scale_d, offset_d), None if layer.ints is None else layer.ints.astype(np.float64))
        if layer.bias is not None:
            out = out + channel_axis(np.round(layer.bias.astype(np.float64) / deq), out.ndim)
        return out * channel_axis(deq, out.ndim)

    h = run(conv1, x, lambda v, w: conv2d(v, w, pad=1))
    h = np.maximum(h, 0)
    h = run(dw, h, lambda v, w: conv2d(v, w, pad=1, groups=8))
    h = run(deconv, h, lambda v, w: conv_transpose2d(v, w, stride=2, groups=2))
    h = run(pool, h, lambda v, _: avg_pool(pad_hw(v, 1), 3))
    h = h.reshape(h.shape[0], -1)
    h = run(fc, h, lambda v, w: v @ w.T)
    return ranges if factors is None else h


def calibrate(ranges):
    factors = {}
    for name, (lo, hi) in ranges.items():
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = F32((hi - lo) / 255.0)
        factors[name] = (scale, int(np.round(-128 - lo / float(scale))))
    return factors


def record_text(layers, factors):
    out = []
    for layer in layers:
        scale_d, offset_d = factors[layer.name]
        fields = [f"scale_d: {float(scale_d)!r}", f"offset_d: {offset_d}"]
        fields += [f"scale_w: {float(s)!r}" for s in layer.scale_w] + ["offset_w: 0"] * len(layer.scale_w)
        fields += ['act_type: "INT8"'] + ([] if layer.ints is None else ['wts_type: "INT8"'])
        body = "".join(f"    {f}\n" for f in fields)
        out.append(f'record {{\n  key: "{layer.name}"\n  value {{\n{body}  }}\n}}\n')
    return "".join(out)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("save_cli")
    rng = np.random.default_rng(7)
    layers = make_layers(rng)
    calib = rng.normal(0, 1, (4, 3, 8, 8)).astype(F32)
    factors = calibrate(simulate(calib, layers))
    onnx.save(build_model(layers), str(root / "modified.onnx"))
    (root / "record.txt").write_text(record_text(layers, factors))
    result = subprocess.run([CLI, "save-model", "--model", str(root / "modified.onnx"), "--record",
                             str(root / "record.txt"), "--save-path", str(root / "out" / "net")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    paths = [str(root / "out" / "net_deploy_model.onnx"), str(root / "out" / "net_fake_quant_model.onnx"),
             str(root / "out" / "net_qdq_model.onnx")]
    assert result.stdout.split() == paths
    return {"root": root, "layers": layers, "factors": factors, "deploy": onnx.load(paths[0]),
            "fake_quant": onnx.load(paths[1]), "fake_quant_path": paths[1], "qdq_path": paths[2], "calib": calib}


def test_fake_quant_model_passes_the_checker(saved):
    onnx.checker.check_model(saved["fake_quant"], full_check=True)


def test_fake_quant_model_matches_integer_simulation(saved):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(saved["fake_quant_path"], providers=["CPUExecutionProvider"])
    x = np.random.default_rng(11).normal(0, 1, (3, 3, 8, 8)).astype(F32)
    got = session.run(None, {"input": x})[0]
    expected = simulate(x, saved["layers"], saved["factors"])
    assert got.shape == (3, 10)
    span = float(expected.max() - expected.min())
    assert span > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * span)


def test_fake_quant_model_tracks_the_float_model(saved):
    ort = pytest.importorskip("onnxruntime")
    float_model = build_model(saved["layers"])
    for node in float_model.graph.node:
        for attr in [a for a in node.attribute if a.name == "op_data_type"]:
            node.attribute.remove(attr)
    # The calibration batch itself: every activation is inside its calibrated range.
    x = saved["calib"]
    reference = ort.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"])
    quantized = ort.InferenceSession(saved["fake_quant_path"], providers=["CPUExecutionProvider"])
    want = reference.run(None, {"input": x})[0].ravel()
    got = quantized.run(None, {"input": x})[0].ravel()
    assert np.dot(want, got) / (np.linalg.norm(want) * np.linalg.norm(got)) > 0.99


def test_deploy_model_nodes(saved):
    graph = saved["deploy"].graph
    expected = [("conv1.quant", "AscendQuant"), ("conv1", "Conv"), ("conv1.dequant", "AscendDequant"),
                ("relu", "Relu"), ("dw.quant", "AscendQuant"), ("dw", "Conv"), ("dw.dequant", "AscendDequant"),
                ("deconv.quant", "AscendQuant"), ("deconv", "ConvTranspose"), ("deconv.dequant", "AscendDequant"),
                ("pool.quant", "AscendQuant"), ("pool_pad", "Pad"), ("pool", "AveragePool"),
                ("pool.dequant", "AscendDequant"), ("flatten", "Flatten"), ("fc.quant", "AscendQuant"), ("fc", "Gemm"),
                ("fc.dequant", "AscendDequant")]
    assert [(n.name, n.op_type) for n in graph.node] == expected
    nodes = {n.name: n for n in graph.node}
    assert all(a.name != "op_data_type" for n in graph.node for a in n.attribute)
    assert nodes["pool.quant"].output[0] == nodes["pool_pad"].input[0]
    assert list(nodes["fc.dequant"].output) == ["output"] and nodes["fc"].output[0] == "fc_output0"
    assert helper.get_attribute_value(next(a for a in nodes["fc"].attribute if a.name == "transB")) == 0
    for layer, (scale_d, offset_d) in saved["factors"].items():
        attrs = {a.name: helper.get_attribute_value(a) for a in nodes[layer + ".quant"].attribute}
        assert attrs == {"scale": pytest.approx(float(F32(1.0 / float(scale_d))), rel=0, abs=0),
                         "offset": float(offset_d), "dst_type": b"INT8"}
        assert {a.name: helper.get_attribute_value(a) for a in nodes[layer + ".dequant"].attribute} == {"dtype": 0}
    assert [o.name for o in graph.output] == ["output"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_deploy_model_initializers(saved):
    inits = {t.name: t for t in saved["deploy"].graph.initializer}
    expected = {
        "conv1.weight": (TensorProto.INT8, [8, 3, 3, 3]), "conv1.bias": (TensorProto.INT32, [8]),
        "conv1.dequant.param": (TensorProto.UINT64, [8]), "dw.weight": (TensorProto.INT8, [8, 1, 3, 3]),
        "dw.dequant.param": (TensorProto.UINT64, [8]), "deconv.weight": (TensorProto.INT8, [8, 2, 2, 2]),
        "deconv.bias": (TensorProto.INT32, [4]), "deconv.dequant.param": (TensorProto.UINT64, [4]),
        "pool_pad.pads": (TensorProto.INT64, [8]), "pool.dequant.param": (TensorProto.UINT64, [1]),
        "fc.weight": (TensorProto.INT8, [144, 10]), "fc.bias": (TensorProto.INT32, [10]),
        "fc.dequant.param": (TensorProto.UINT64, [1]),
    }
    assert {k: (t.data_type, list(t.dims)) for k, t in inits.items()} == expected
    conv1, dw, deconv, _, fc = saved["layers"]
    for layer in (conv1, dw, deconv):
        np.testing.assert_array_equal(numpy_helper.to_array(inits[layer.name + ".weight"]), layer.ints)
    np.testing.assert_array_equal(numpy_helper.to_array(inits["fc.weight"]), fc.ints.T)
    assert inits["conv1.bias"].int32_data and inits["conv1.dequant.param"].uint64_data
    assert inits["conv1.weight"].raw_data
    for layer in saved["layers"]:
        scale_d = saved["factors"][layer.name][0]
        deq = (layer.scale_w * F32(scale_d)).astype(F32)
        param = numpy_helper.to_array(inits[layer.name + ".dequant.param"])
        np.testing.assert_array_equal(param, deq.view(np.uint32).astype(np.uint64))
        if layer.bias is not None:
            np.testing.assert_array_equal(numpy_helper.to_array(inits[layer.name + ".bias"]),
                                          np.round(layer.bias.astype(np.float64) / deq.astype(np.float64)))


def run_cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, check=False)


def test_help():
    top = run_cli("--help")
    assert top.returncode == 0 and "save-model" in top.stdout
    sub = run_cli("save-model", "--help")
    assert sub.returncode == 0 and "--save-path" in sub.stdout


def test_usage_errors_exit_2(saved):
    for args in [(), ("bogus",), ("save-model",), ("save-model", "--model"),
                 ("save-model", "--model", "m", "--record", "r", "--save-path", "s", "--outputs", "int8"),
                 ("save-model", "--model", "m", "--record", "r", "--save-path", "s", "--extra")]:
        result = run_cli(*args)
        assert result.returncode == 2, args
        if args:
            assert "amct: error: " in result.stderr, args


def test_failures_exit_1_without_outputs(saved):
    root = saved["root"]
    bad = root / "bad_record.txt"
    bad.write_text('record {\n  key: "conv1"\n  value {\n    scale_w: 0.01\n    offset_w: 0\n  }\n}\n')
    result = run_cli("save-model", "--model", str(root / "modified.onnx"), "--record", str(bad),
                     "--save-path", str(root / "bad_out" / "net"))
    assert result.returncode == 1
    assert result.stderr.startswith("amct: error: ") and "conv1" in result.stderr and "scale_d" in result.stderr
    assert not (root / "bad_out").exists()
    missing = run_cli("save-model", "--model", str(root / "absent.onnx"), "--record", str(bad),
                      "--save-path", str(root / "bad_out" / "net"))
    assert missing.returncode == 1 and "absent.onnx" in missing.stderr


def test_outputs_option_selects_models(saved):
    root = saved["root"]
    result = run_cli("save-model", "--model", str(root / "modified.onnx"), "--record", str(root / "record.txt"),
                     "--save-path", str(root / "only") + "/", "--outputs", "fake_quant")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(root / "only")) == ["fake_quant_model.onnx"]
    result = run_cli("save-model", "--model", str(root / "modified.onnx"), "--record", str(root / "record.txt"),
                     "--save-path", str(root / "qdq_only") + "/", "--outputs", "qdq")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(root / "qdq_only")) == ["qdq_model.onnx"]


def test_qdq_model_computes_the_fake_quant_arithmetic(saved):
    from amct_pytorch.compare import compare

    report = compare(saved["fake_quant_path"], saved["qdq_path"], {"input": saved["calib"]})
    for name, entry in report["outputs"].items():
        assert entry["qdq_vs_fake_quant"]["cosine"] >= 0.9999, name
        assert entry["qdq_vs_fake_quant"]["within_step"] >= 0.999, name
