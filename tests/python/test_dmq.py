"""DMQ balancing (docs/amct-reference.md#dmq-balancing): quantize_preprocess's
balancing model and record, the factors applied by quantize_model, the Mul(x, 1/s)
of the deploy, fake-quant and QDQ models, and AMCT's errors."""

import copy
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from onnx import numpy_helper
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import amct_pytorch as amct
from amct_pytorch.compare import compare
from int_sim import integer_model
from models import spec_net
from record_proto import ScaleOffsetRecord, read_record

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "data", "configs")
DMQ_CFG = os.path.join(CONFIGS, "dmq_balancer.cfg")
EPS = np.float32(np.finfo(np.float32).eps)
SPEC_DMQ_LAYERS = ["conv1", "dw", "deconv", "fc"]


class OutlierMlp(nn.Module):
    """A transformer-style MLP on [batch, tokens, dim] whose input has a few
    channels 40x larger than the rest, the outliers transformer activations
    are known for. Linear on a 3-D input exports as MatMul + Add. (No
    LayerNorm or GELU: ONNX Runtime and torch compute those with different
    rounding, which moves inputs across quantization steps and would hide
    what the simulation checks.)"""

    OUTLIERS = (3, 17, 29)

    def __init__(self, dim=32, hidden=64):
        super().__init__()
        gain = torch.ones(dim)
        gain[list(self.OUTLIERS)] = 40.0
        self.register_buffer("gain", gain)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x * self.gain)))


def outlier_mlp():
    torch.manual_seed(3)
    return OutlierMlp().eval()


class EdgeNet(nn.Module):
    """Input channel 1 is always zero with a non-zero weight column, channel 2
    has a zero weight column, channel 5 both: the eps rules of DMQ."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.register_buffer("mask", torch.tensor([1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.float32))
        with torch.no_grad():
            self.fc.weight[:, [2, 5]] = 0.0

    def forward(self, x):
        return self.fc(x * self.mask)


def reference_factors(a, w, alpha):
    """docs/amct-reference.md#dmq-balancing in NumPy float32."""
    a, w = np.asarray(a, np.float32), np.asarray(w, np.float32)
    s = np.zeros_like(a)
    ok = w >= EPS
    s[ok] = np.power(a[ok], np.float32(alpha)) / np.power(w[ok], np.float32(1 - alpha))
    valid = s >= EPS
    if not valid.any():
        return np.ones_like(a)
    balanced_w = (w[valid] * s[valid]).max()
    balanced_a = (a[valid] / s[valid]).max()
    no_a, no_w = a < EPS, w < EPS
    out = s.copy()
    out[no_a & no_w] = 1.0
    out[no_a & ~no_w] = balanced_w / w[no_a & ~no_w]
    out[~no_a & no_w] = a[~no_a & no_w] / balanced_a
    return out


def input_channel_max(x, channels_last):
    x = np.abs(x.detach().numpy().astype(np.float32))
    axis = x.ndim - 1 if channels_last else 1
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).max(axis=1)


def weight_channel_max(module):
    """max|W| per global input channel of a torch layer's weight."""
    w = np.abs(module.weight.detach().numpy().astype(np.float32))
    if isinstance(module, nn.ConvTranspose2d):  # [Cin, Cout/g, k...]
        return w.reshape(w.shape[0], -1).max(axis=1)
    if isinstance(module, nn.Linear):  # [Cout, Cin]
        return w.max(axis=0)
    groups = module.groups  # [Cout, Cin/g, k...]: group g owns inputs g*Cin/g ...
    per_group = w.reshape(groups, w.shape[0] // groups, w.shape[1], -1).max(axis=(1, 3))
    return per_group.reshape(-1)


def scale_input_channels(module, s):
    """W * s along the torch layer's input channels (what quantize_model does)."""
    s = torch.tensor(np.asarray(s, np.float32))
    w = module.weight.data
    if isinstance(module, nn.ConvTranspose2d):
        w.mul_(s.reshape([-1] + [1] * (w.dim() - 1)))
    elif isinstance(module, nn.Linear):
        w.mul_(s.reshape(1, -1))
    else:
        g = module.groups
        w.view(g, w.shape[0] // g, w.shape[1], -1).mul_(s.reshape(g, 1, -1, 1))


class DivideInput(nn.Module):
    def __init__(self, s, channels_last, inner):
        super().__init__()
        self.s, self.channels_last, self.inner = torch.tensor(np.asarray(s, np.float32)), channels_last, inner

    def forward(self, x):
        shape = [1] * x.dim()
        shape[-1 if self.channels_last else 1] = -1
        return self.inner(x / self.s.reshape(shape))


class FloatBias(nn.Module):
    def __init__(self, inner, bias):
        super().__init__()
        self.inner, self.bias = inner, bias

    def forward(self, x):
        return self.inner(x) + self.bias


def balanced_integer_model(float_model, records, fuse, float_bias=()):
    """int_sim's integer simulation with the DMQ layers reading x / s and
    quantizing the weights W * s. The layers in `float_bias` are Linear
    layers on N-D inputs, whose bias Add stays float after the dequant
    (docs/amct-reference.md#bias-quantization)."""
    sim = integer_model(float_model, records, fuse)
    for name, rec in records.items():
        layer = sim.get_submodule(name)
        wrapped = layer
        if name in float_bias:
            wrapped = FloatBias(layer, layer.module.bias.detach().clone())
            layer.module.bias = None
        if rec.tensor_balance_factor:
            scale_input_channels(layer.module, rec.tensor_balance_factor)
            wrapped = DivideInput(rec.tensor_balance_factor, isinstance(layer.module, nn.Linear), wrapped)
        parent, _, child = name.rpartition(".")
        setattr(sim.get_submodule(parent) if parent else sim, child, wrapped)
    return sim


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def capture_inputs(model, names, x):
    captured = {}
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda m, args, n=n: captured.__setitem__(n, args[0].detach().clone())) for n in names]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return captured


def read_record_text(text):
    message = text_format.Parse(text, ScaleOffsetRecord())
    return {entry.key: entry.value for entry in message.record}


class DmqFlow:
    """create_quant_config (from the simple config) -> quantize_preprocess ->
    balancing forward(s) -> quantize_model -> calibration -> save_model."""

    def __init__(self, model, batches, root, simple_config=DMQ_CFG, preprocess_forwards=2):
        self.model, self.batches, self.root = model, batches, root
        self.config = str(root / "config.json")
        self.record = str(root / "record.txt")
        self.modified = str(root / "modified.onnx")
        self.save_path = str(root / "out" / "model")
        amct.create_quant_config(self.config, model, batches[0], config_defination=simple_config)
        self.balancer = amct.quantize_preprocess(self.config, self.record, model, batches[0])
        self.record_after_preprocess = None
        with torch.no_grad():
            for batch in batches[:preprocess_forwards]:
                self.balancer(batch)
        self.record_after_preprocess = open(self.record).read()
        self.calib = amct.quantize_model(self.config, self.modified, self.record, model, batches[0])
        with torch.no_grad():
            for batch in batches:
                self.calib(batch)
        amct.save_model(self.modified, self.record, self.save_path)
        self.deploy = self.save_path + "_deploy_model.onnx"
        self.fake_quant = self.save_path + "_fake_quant_model.onnx"
        self.qdq = self.save_path + "_qdq_model.onnx"


def spec_batches(n=2, batch=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 8, 8, generator=gen) for _ in range(n)]


def mlp_batches(n=2, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 12, 32, generator=gen) for _ in range(n)]


@pytest.fixture(scope="module")
def spec_flow(tmp_path_factory):
    return DmqFlow(spec_net(), spec_batches(), tmp_path_factory.mktemp("dmq_spec"))


@pytest.fixture(scope="module")
def mlp_flow(tmp_path_factory):
    return DmqFlow(outlier_mlp(), mlp_batches(), tmp_path_factory.mktemp("dmq_mlp"))


# DMQ with one weight scale per Linear output channel (linear_channel_wise,
# beyond AMCT): the balanced weight is quantized per row.
MLP_PER_CHANNEL_CFG = """\
batch_num : 2
linear_channel_wise : true
common_config : {
    arq_quantize : { channel_wise : true }
    ifmr_quantize : { search_range_start : 0.7 search_range_end : 1.3 search_step : 0.01 }
    dmq_balancer : { migration_strength : 0.5 }
}
"""


@pytest.fixture(scope="module")
def mlp_per_channel_flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmq_mlp_pc")
    simple = root / "dmq_pc.cfg"
    simple.write_text(MLP_PER_CHANNEL_CFG)
    return DmqFlow(outlier_mlp(), mlp_batches(), root, simple_config=str(simple))


def test_per_channel_linear_record_has_factors_and_a_scale_per_row(mlp_per_channel_flow):
    records = read_record(mlp_per_channel_flow.record)
    for name in ("fc1", "fc2"):
        module = mlp_per_channel_flow.model.get_submodule(name)
        assert len(records[name].scale_w) == module.out_features
        assert len(records[name].tensor_balance_factor) == module.in_features


def test_config_from_amct_dmq_simple_config(spec_flow):
    config = json.load(open(spec_flow.config))
    assert {name: entry.get("dmq_balancer_param") for name, entry in config.items() if isinstance(entry, dict)} == {
        "conv1": 0.5, "dw": 0.5, "deconv": 0.5, "fc": 0.5, "pool": None}


def test_balancing_model_wraps_dmq_layers_and_keeps_outputs(tmp_path):
    model = spec_net()
    config, record = str(tmp_path / "config.json"), str(tmp_path / "record.txt")
    batches = spec_batches()
    amct.create_quant_config(config, model, batches[0], config_defination=DMQ_CFG)
    open(record, "w").write("stale")
    balancer = amct.quantize_preprocess(config, record, model, batches[0])
    wrapped = {n: type(m).__name__ for n, m in balancer.named_modules() if hasattr(m, "replaced_module")}
    assert wrapped == {n: "DMQBalancer" for n in SPEC_DMQ_LAYERS}
    assert not any(hasattr(m, "replaced_module") for m in model.modules())  # the user's model is untouched
    assert open(record).read() == ""  # recreated empty
    with torch.no_grad():
        assert torch.equal(balancer(batches[0]), model(batches[0]))


def test_first_forward_writes_factors_of_the_reference(spec_flow):
    model = spec_net()
    inputs = capture_inputs(model, SPEC_DMQ_LAYERS, spec_flow.batches[0])
    fused = {"conv1": fuse_conv_bn_eval(copy.deepcopy(model.conv1), model.bn)}
    records = read_record(spec_flow.record)
    assert list(records)[:4] == SPEC_DMQ_LAYERS  # DMQ entries first, in named_modules() order
    for name in SPEC_DMQ_LAYERS:
        module = fused.get(name, model.get_submodule(name))
        a = input_channel_max(inputs[name], isinstance(module, nn.Linear))
        expected = reference_factors(a, weight_channel_max(module), 0.5)
        np.testing.assert_allclose(records[name].tensor_balance_factor, expected, rtol=2e-6, err_msg=name)
        assert records[name].HasField("scale_d") and len(records[name].scale_w) > 0


def test_second_forward_does_not_rewrite_the_record(spec_flow):
    # AMCT quirk: the second preprocess forward (other data) changed nothing.
    model = spec_net()
    first = capture_inputs(model, ["fc"], spec_flow.batches[0])["fc"]
    preprocess = read_record_text(spec_flow.record_after_preprocess)
    a = input_channel_max(first, True)
    np.testing.assert_allclose(preprocess["fc"].tensor_balance_factor,
                               reference_factors(a, weight_channel_max(model.fc), 0.5), rtol=2e-6)
    assert [k for k, v in preprocess.items()] == SPEC_DMQ_LAYERS
    assert all(not v.HasField("scale_d") and not v.scale_w for v in preprocess.values())


def test_eps_rules_end_to_end(tmp_path):
    model = EdgeNet().eval()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    config, record = str(tmp_path / "config.json"), str(tmp_path / "record.txt")
    amct.create_quant_config(config, model, x, config_defination=DMQ_CFG)
    with torch.no_grad():
        amct.quantize_preprocess(config, record, model, x)(x)
    got = np.asarray(read_record(record)["fc"].tensor_balance_factor, np.float32)
    a = input_channel_max(x * model.mask, True)
    w = weight_channel_max(model.fc)
    assert a[1] == 0 and a[5] == 0 and w[2] == 0 and w[5] == 0
    expected = reference_factors(a, w, 0.5)
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    assert got[5] == 1.0
    normal = [0, 3, 4, 6, 7]
    np.testing.assert_allclose(got[1] * w[1], (w * expected)[normal].max(), rtol=2e-6)
    np.testing.assert_allclose(a[2] / got[2], (a / expected)[normal].max(), rtol=2e-6)


@pytest.mark.parametrize("flow_name", ["spec_flow", "mlp_flow", "mlp_per_channel_flow"])
def test_outputs_pass_the_checker_and_fake_quant_matches_simulation(flow_name, request):
    flow = request.getfixturevalue(flow_name)
    onnx.checker.check_model(onnx.load(flow.fake_quant), full_check=True)
    onnx.checker.check_model(onnx.load(flow.qdq), full_check=True)
    deploy = onnx.load(flow.deploy)
    for node in deploy.graph.node:
        if node.op_type not in ("AscendQuant", "AscendDequant"):
            assert onnx.defs.has(node.op_type, max_inclusive_version=11), node.op_type
    records = read_record(flow.record)
    spec = flow_name == "spec_flow"
    sim = balanced_integer_model(flow.model, records, [("conv1", "bn")] if spec else [],
                                 float_bias=() if spec else ("fc1", "fc2"))
    x = (spec_batches(1, 4, seed=9) if spec else mlp_batches(1, seed=9))[0]
    with torch.no_grad():
        expected = sim(x).numpy()
    got = run_ort(flow.fake_quant, x)
    span = float(expected.max() - expected.min())
    assert np.max(np.abs(got - expected)) <= 1e-4 * span
    with torch.no_grad():
        assert cosine(got, flow.model(x).numpy()) >= 0.99


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_deploy_layout_has_the_mul_before_each_dmq_layer(spec_flow):
    graph = onnx.load(spec_flow.deploy).graph
    layers = [(n.op_type, n.name) for n in graph.node if n.op_type not in (
        "Reshape", "Concat", "Constant", "Shape", "Squeeze", "Gather", "Unsqueeze", "Slice", "Cast")]
    assert layers == [
        ("Mul", "conv1.mul"), ("AscendQuant", "conv1.quant"), ("Conv", "conv1"), ("AscendDequant", "conv1.dequant"),
        ("Relu", "relu"),
        ("Mul", "dw.mul"), ("AscendQuant", "dw.quant"), ("Conv", "dw"), ("AscendDequant", "dw.dequant"),
        ("Mul", "deconv.mul"), ("AscendQuant", "deconv.quant"), ("ConvTranspose", "deconv"),
        ("AscendDequant", "deconv.dequant"),
        ("AscendQuant", "pool.quant"), ("AveragePool", "pool"), ("AscendDequant", "pool.dequant"),
        ("Mul", "fc.mul"), ("AscendQuant", "fc.quant"), ("Gemm", "fc"), ("AscendDequant", "fc.dequant"),
    ]
    nodes = {n.name: n for n in graph.node}
    records = read_record(spec_flow.record)
    producers = {out: n for n in graph.node for out in n.output}
    shapes = {"conv1": [1, 3, 1, 1], "dw": [1, 8, 1, 1], "deconv": [1, 8, 1, 1], "fc": [1, 256]}
    for layer, shape in shapes.items():
        mul, quant, node = nodes[f"{layer}.mul"], nodes[f"{layer}.quant"], nodes[layer]
        constant = nodes[f"{layer}.tensor_balance_factor"]
        assert constant.op_type == "Constant" and list(constant.output) == [f"{layer}.tensor_balance_factor.output0"]
        value = _attrs(constant)["value"]
        assert value.data_type == onnx.TensorProto.FLOAT and list(value.dims) == shape
        expected = (np.float32(1.0) / np.asarray(records[layer].tensor_balance_factor, np.float32)).reshape(shape)
        assert np.array_equal(numpy_helper.to_array(value), expected)
        assert list(mul.input)[1] == constant.output[0] and list(mul.output) == [f"{layer}.mul.output0"]
        assert list(quant.input) == [f"{layer}.mul.output0"] and node.input[0] == quant.output[0]
        assert not _attrs(mul)
    # The Mul reads what the layer read before: conv1 the graph input, fc the Flatten.
    assert nodes["conv1.mul"].input[0] == graph.input[0].name
    assert producers[nodes["fc.mul"].input[0]].op_type in ("Flatten", "Reshape")


def test_qdq_model_balances_before_quantize_linear(mlp_flow):
    graph = onnx.load(mlp_flow.qdq).graph
    nodes = {n.name: n for n in graph.node}
    for layer in ("fc1", "fc2"):
        mul = nodes[f"{layer}.mul"]
        consumers = [n for n in graph.node if mul.output[0] in n.input]
        assert [n.op_type for n in consumers] == ["QuantizeLinear"]
    x = mlp_batches(1, seed=11)[0].numpy()
    report = compare(mlp_flow.fake_quant, mlp_flow.qdq, {graph.input[0].name: x})
    out = next(iter(report["outputs"].values()))["qdq_vs_fake_quant"]
    assert out["cosine"] >= 0.9999 and out["within_step"] >= 0.999


def test_calibration_model_divides_inputs_by_the_factors(mlp_flow):
    records = read_record(mlp_flow.record)
    wrapper = mlp_flow.calib.get_submodule("fc1")
    assert type(wrapper).__name__ == "BalancedInput"
    seen = {}
    hook = wrapper.module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = mlp_batches(1, seed=13)[0]
    with torch.no_grad():
        mlp_flow.calib(x)
    hook.remove()
    s = torch.tensor(np.asarray(records["fc1"].tensor_balance_factor, np.float32))
    assert torch.equal(seen["x"], (x * mlp_flow.model.gain) / s)


def _format_float(v):
    """protobuf's float text: the shortest repr that round-trips the float32."""
    text = repr(float(np.float32(v)))
    for digits in range(1, 10):
        candidate = f"{float(np.float32(v)):.{digits}g}"
        if np.float32(float(candidate)) == np.float32(v):
            text = candidate
            break
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def test_record_written_by_amct_is_accepted_by_save_model(spec_flow, tmp_path):
    # The record as AMCT's text_format.MessageToString prints it (fields in
    # field-number order, tensor_balance_factor between offset_w and act_type),
    # without our sidecars.
    records = read_record(spec_flow.record)
    lines = []
    for key, rec in records.items():
        lines += ["record {", f'  key: "{key}"', "  value {"]
        lines += [f"    scale_d: {_format_float(rec.scale_d)}", f"    offset_d: {rec.offset_d}"]
        lines += [f"    scale_w: {_format_float(v)}" for v in rec.scale_w]
        lines += [f"    offset_w: {v}" for v in rec.offset_w]
        lines += [f"    tensor_balance_factor: {_format_float(v)}" for v in rec.tensor_balance_factor]
        lines += [f'    act_type: "{rec.act_type}"'] + ([f'    wts_type: "{rec.wts_type}"'] if rec.wts_type else [])
        lines += ["  }", "}"]
    amct_record = tmp_path / "amct_record.txt"
    amct_record.write_text("\n".join(lines) + "\n")
    assert amct_record.read_text() == open(spec_flow.record).read()
    save_path = str(tmp_path / "amct" / "model")
    amct.save_model(spec_flow.modified, str(amct_record), save_path)
    x = spec_batches(1, 4, seed=4)[0]
    assert np.array_equal(run_ort(save_path + "_fake_quant_model.onnx", x), run_ort(spec_flow.fake_quant, x))


def test_dmq_improves_outlier_mlp(tmp_path):
    # Held-out data; 4 calibration batches of 8 x 16 tokens.
    model = outlier_mlp()
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(8, 16, 32, generator=gen) for _ in range(4)]
    held_out = [torch.randn(8, 16, 32, generator=gen) for _ in range(4)]
    with torch.no_grad():
        reference = np.concatenate([model(x).numpy() for x in held_out])

    def fake_quant_cosine(path):
        return cosine(np.concatenate([run_ort(path, x) for x in held_out]), reference)

    simple = tmp_path / "dmq_batch4.cfg"
    simple.write_text(open(DMQ_CFG).read().replace("batch_num : 2", "batch_num : 4"))
    balanced = fake_quant_cosine(DmqFlow(model, batches, tmp_path / "dmq", simple_config=str(simple)).fake_quant)
    root = tmp_path / "plain"
    root.mkdir()
    config, record, modified = str(root / "c.json"), str(root / "r.txt"), str(root / "m.onnx")
    # The same settings (IFMR asymmetric, per-tensor ARQ for Linear) without DMQ.
    amct.create_quant_config(config, model, batches[0], batch_num=4)
    calib = amct.quantize_model(config, modified, record, model, batches[0])
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    amct.save_model(modified, record, str(root / "out" / "model"))
    plain = fake_quant_cosine(str(root / "out" / "model_fake_quant_model.onnx"))
    assert 1 - balanced < 0.5 * (1 - plain), (balanced, plain)


# ---- errors ----

def _write_config(path, model, x, simple=DMQ_CFG):
    amct.create_quant_config(str(path), model, x, config_defination=simple)
    return str(path)


def test_preprocess_without_dmq_layer_is_refused(tmp_path):
    model, x = spec_net(), spec_batches(1)[0]
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, model, x)
    with pytest.raises(RuntimeError, match=r"^No dmq_balancer layer in quant config file, please check whether the "
                                           r"quant config file matches or whether a layer in graph that supports "
                                           r"dmq_balancer\."):
        amct.quantize_preprocess(config, str(tmp_path / "record.txt"), model, x)
    assert not os.path.exists(tmp_path / "record.txt")


def test_preprocess_argument_errors(tmp_path):
    model, x = spec_net(), spec_batches(1)[0]
    config = _write_config(tmp_path / "config.json", model, x)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(OSError, match="missing.json.*does not exist"):
        amct.quantize_preprocess(missing, str(tmp_path / "r.txt"), model, x)
    with pytest.raises(TypeError, match="argument config_file must be str"):
        amct.quantize_preprocess(1, str(tmp_path / "r.txt"), model, x)
    with pytest.raises(TypeError, match="argument model must be Module"):
        amct.quantize_preprocess(config, str(tmp_path / "r.txt"), "model", x)
    with pytest.raises(ValueError, match="record_file '.*/' must name a file"):
        amct.quantize_preprocess(config, str(tmp_path) + "/", model, x)
    balancer = amct.quantize_preprocess(config, str(tmp_path / "r.txt"), model, x)
    with pytest.raises(RuntimeError, match="DMQBalancer"):
        amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), balancer, x)


def test_factor_out_of_range_is_refused_at_the_forward(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[0].weight[:, 0] = 1e-6
    x = torch.ones(3, 4)
    x[:, 0] = 1e8  # s_0 = sqrt(1e8 / 1e-6) = 1e7 > 1/FLT_EPSILON
    config = _write_config(tmp_path / "config.json", model, x)
    balancer = amct.quantize_preprocess(config, str(tmp_path / "r.txt"), model, x)
    with pytest.raises(RuntimeError, match=r"^layer '0': The tensor balance factor is less than FLT_EPSILON or "
                                           r"larger than 1/FLT_EPSILON! \(input channel 0: [0-9.e+]+\)"):
        with torch.no_grad():
            balancer(x)
    assert open(tmp_path / "r.txt").read() == ""


def test_quantize_model_needs_the_preprocess_record(tmp_path):
    model, x = spec_net(), spec_batches(1)[0]
    config = _write_config(tmp_path / "config.json", model, x)
    record = str(tmp_path / "record.txt")
    amct.quantize_preprocess(config, record, model, x)  # no forward: the record stays empty
    expected = r"^config_file indicates dmq_balancer, but record_file is empty\. please check quant_preprocess and " \
               r"calibration is done!"
    with pytest.raises(RuntimeError, match=expected):
        amct.quantize_model(config, str(tmp_path / "m.onnx"), record, model, x)
    with pytest.raises(RuntimeError, match=expected):
        amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "none.txt"), model, x)
    assert not os.path.exists(tmp_path / "m.onnx")


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace('key: "fc"', 'key: "unrelated"'),
     r"config indicates dmq_balancer in layer: fc, but no tensor_balance_factor found in record_file"),
    (lambda text: text.replace("tensor_balance_factor", "tensor_balance_factor: 1.0\n    tensor_balance_factor", 1),
     r"layer 'conv1': tensor_balance_factor has 4 values; expected 3 \(one per input channel of the layer\)"),
    (lambda text: text.replace("tensor_balance_factor: ", "tensor_balance_factor: 0 #", 1),
     r"layer 'conv1': tensor_balance_factor\[0\] is 0; expected a value in \[FLT_EPSILON, 1/FLT_EPSILON\]"),
])
def test_bad_factors_are_refused_by_quantize_model_and_save_model(spec_flow, tmp_path, edit, message):
    model, x = spec_net(), spec_batches(1)[0]
    bad = tmp_path / "bad.txt"
    bad.write_text(edit(spec_flow.record_after_preprocess))
    with pytest.raises(ValueError, match=message):
        amct.quantize_model(spec_flow.config, str(tmp_path / "m.onnx"), str(bad), model, x)
    if "found in" in message:
        return
    bad_full = tmp_path / "bad_full.txt"
    bad_full.write_text(edit(open(spec_flow.record).read()))
    with pytest.raises(ValueError, match=message):
        amct.save_model(spec_flow.modified, str(bad_full), str(tmp_path / "out" / "m"))
    assert not os.path.exists(tmp_path / "out")


def test_factor_on_avgpool_is_refused_by_save_model(spec_flow, tmp_path):
    text = open(spec_flow.record).read()
    pool = text.index('key: "pool"')
    act = text.index("    act_type", pool)
    bad = tmp_path / "bad.txt"
    bad.write_text(text[:act] + "    tensor_balance_factor: 1.0\n" + text[act:])
    with pytest.raises(ValueError, match=r"layer 'pool': tensor_balance_factor is not allowed on AveragePool layers"):
        amct.save_model(spec_flow.modified, str(bad), str(tmp_path / "out" / "m"))
