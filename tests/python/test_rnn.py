"""LSTM and GRU through the whole flow, on AMCT's RNN test models (a GRU or
LSTM after a Conv1d, its initial state an input of the model):
create_quant_config from simple configs in the style of AMCT's
ptq_rnn_a16w8 and ptq_rnn_a8w4 samples, quantize_model, calibration,
save_model. The record carries scale_h/offset_h and scale_r/offset_r, the
deploy model holds AMCT's Basic*InplaceFillWindowCache op, and the
fake-quant model computes what an independent NumPy simulation of the
integer arithmetic gives."""

import copy
import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn
import torch.nn.functional as F

import amct_pytorch as amct
from record_proto import read_record

# ptq_rnn_a16w8: 16-bit activations and 8-bit per-gate-row weights for the
# RNN layers (IFMR), the rest at AMCT's defaults.
A16W8_SIMPLE_CONFIG = """\
batch_num : 2
activation_offset : true
override_layer_types : {
    layer_type : "%s"
    calibration_config : {
        arq_quantize : { channel_wise : true quant_bits : 8 }
        ifmr_quantize : { search_range_start : 0.7 search_range_end : 1.3 search_step : 0.01 dst_type : INT16 }
    }
}
"""

# ptq_rnn_a8w4: 4-bit weights everywhere, 8-bit HFMG activations.
A8W4_SIMPLE_CONFIG = """\
batch_num : 2
activation_offset : true
common_config : {
    arq_quantize : { quant_bits : 4 }
    hfmg_quantize : { num_of_bins : 4096 }
}
"""

# torch's gate k is ONNX's gate order[k] (LSTM i,f,g,o <- i,o,f,c; GRU r,z,n <- z,r,h).
TORCH_FROM_ONNX = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2]}


class RnnNet(nn.Module):
    """Conv1d -> LSTM/GRU with the initial state from the model's inputs."""

    def __init__(self, cell, hidden=16, **rnn_args):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.rnn = cell(8, hidden, **rnn_args)

    def forward(self, x, h0, c0=None):
        y = self.conv(x).permute(2, 0, 1)  # [T, B, C]
        state = h0 if c0 is None else (h0, c0)
        out, _ = self.rnn(y, state)
        return out


def rnn_net(kind, seed=0, **rnn_args):
    torch.manual_seed(seed)
    return RnnNet(nn.LSTM if kind == "LSTM" else nn.GRU, **rnn_args).eval()


def rnn_inputs(kind, batch, gen, steps=12, hidden=16):
    inputs = (torch.randn(batch, 4, steps, generator=gen), 0.5 * torch.randn(1, batch, hidden, generator=gen))
    if kind == "LSTM":
        inputs += (0.5 * torch.randn(1, batch, hidden, generator=gen),)
    return inputs


def input_names(kind):
    return ["x", "h0", "c0"] if kind == "LSTM" else ["x", "h0"]


class Flow:
    """create_quant_config -> quantize_model -> calibration -> save_model."""

    def __init__(self, root, kind, config_name, simple_config):
        self.kind, self.config_name = kind, config_name
        self.model = rnn_net(kind)
        gen = torch.Generator().manual_seed(5)
        batches = [rnn_inputs(kind, 4, gen) for _ in range(2)]
        self.test_input = rnn_inputs(kind, 3, gen)
        self.config, self.modified = str(root / "config.json"), str(root / "modified.onnx")
        self.record = str(root / "record.txt")
        simple = root / "simple.cfg"
        simple.write_text(simple_config)
        amct.create_quant_config(self.config, self.model, batches[0], config_defination=str(simple))
        names = input_names(kind)
        dynamic = {name: {1 if name != "x" else 0: "batch"} for name in names}
        calib = amct.quantize_model(self.config, self.modified, self.record, self.model, batches[0],
                                    input_names=names, output_names=["y"], dynamic_axes=dynamic)
        self.calibration_model = calib
        with torch.no_grad():
            for batch in batches:
                calib(*batch)
        prefix = str(root / "out" / "net")
        amct.save_model(self.modified, self.record, prefix)
        self.fake_quant, self.deploy = prefix + "_fake_quant_model.onnx", prefix + "_deploy_model.onnx"
        self.qdq = prefix + "_qdq_model.onnx"

    def feeds(self, inputs):
        return {name: t.numpy() for name, t in zip(input_names(self.kind), inputs)}


CASES = [("LSTM", "a16w8"), ("GRU", "a16w8"), ("LSTM", "a8w4"), ("GRU", "a8w4")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{c}" for k, c in CASES])
def flow(request, tmp_path_factory):
    kind, config = request.param
    text = A16W8_SIMPLE_CONFIG % kind if config == "a16w8" else A8W4_SIMPLE_CONFIG
    return Flow(tmp_path_factory.mktemp(f"{kind}_{config}"), kind, config, text)


def run_ort(path, feeds):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


# ---- the independent simulation ----

def fake_quant(x, scale, offset, bits):
    """AMCT's activation fake-quant: multiply by the float32 1/scale, round
    half to even, add the offset, clip, subtract it, times scale."""
    inv = np.float32(1.0 / np.float64(np.float32(scale)))
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = np.clip(np.round(x.astype(np.float32) * inv) + offset, lo, hi) - offset
    return q.astype(np.float64) * np.float64(np.float32(scale))


def gate_rows_to_torch(values, kind, rows):
    """Per-row record scales (ONNX gate order) in torch's row order."""
    values = np.asarray(values, dtype=np.float32)
    if values.size == 1:
        return np.full(rows, values[0], dtype=np.float32)
    gates = values.reshape(len(TORCH_FROM_ONNX[kind]), -1)
    return np.concatenate([gates[g] for g in TORCH_FROM_ONNX[kind]])


def int_weight(weight, scales, bits):
    s = scales.reshape(-1, *([1] * (weight.ndim - 1)))
    return np.clip(np.round(weight.astype(np.float32) / s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def simulate(model, kind, records, inputs):
    """The quantized model in float64 NumPy from the float model and the record."""
    x, h0 = inputs[0].numpy(), inputs[1].numpy()
    conv, rnn = model.conv, model.rnn
    rc, rr = records["conv"], records["rnn"]
    act_bits = lambda rec: int(rec.act_type[3:])  # noqa: E731
    wts_bits = lambda rec: int(rec.wts_type[3:])  # noqa: E731

    # Conv1d on integers, dequantized with scale_w * scale_d.
    xq = fake_quant(x, rc.scale_d, rc.offset_d, act_bits(rc)) / np.float64(np.float32(rc.scale_d))
    sw = np.asarray(rc.scale_w, dtype=np.float32)
    deq = (sw * np.float32(rc.scale_d)).astype(np.float64)
    w = int_weight(conv.weight.detach().numpy(), sw, wts_bits(rc))
    b = np.round(conv.bias.detach().numpy().astype(np.float64) / deq)
    y = F.conv1d(torch.from_numpy(xq), torch.from_numpy(w.astype(np.float64)), torch.from_numpy(b),
                 padding=1).numpy() * deq.reshape(1, -1, 1)
    seq = y.astype(np.float32).transpose(2, 0, 1)  # [T, B, C]

    # The RNN as the ONNX op computes it on fake-quantized X, initial_h, W, R
    # and dequantized bias (AMCT's fake-quant model).
    hidden = rnn.hidden_size
    rows = hidden * (4 if kind == "LSTM" else 3)
    bits = act_bits(rr)
    sw = gate_rows_to_torch(rr.scale_w, kind, rows)
    sr = gate_rows_to_torch(rr.scale_r, kind, rows)
    w = int_weight(rnn.weight_ih_l0.detach().numpy(), sw, wts_bits(rr)) * sw[:, None].astype(np.float64)
    r = int_weight(rnn.weight_hh_l0.detach().numpy(), sr, wts_bits(rr)) * sr[:, None].astype(np.float64)
    deq_w = (sw * np.float32(rr.scale_d)).astype(np.float64)
    deq_r = (sr * np.float32(rr.scale_h)).astype(np.float64)
    bw = np.round(rnn.bias_ih_l0.detach().numpy().astype(np.float64) / deq_w) * deq_w
    br = np.round(rnn.bias_hh_l0.detach().numpy().astype(np.float64) / deq_r) * deq_r
    xs = fake_quant(seq, rr.scale_d, rr.offset_d, bits)
    h = fake_quant(h0[0], rr.scale_h, rr.offset_h, bits)
    c = inputs[2].numpy()[0].astype(np.float64) if kind == "LSTM" else None
    outputs = []
    for t in range(xs.shape[0]):
        gx, gh = xs[t] @ w.T + bw, h @ r.T + br
        if kind == "LSTM":
            i, f, g, o = np.split(gx + gh, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:
            xr, xz, xn = np.split(gx, 3, axis=1)
            hr, hz, hn = np.split(gh, 3, axis=1)
            reset, update = sigmoid(xr + hr), sigmoid(xz + hz)
            n = np.tanh(xn + reset * hn)
            h = (1 - update) * n + update * h
        outputs.append(h)
    return np.stack(outputs)


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---- the tests ----

def test_config_quantizes_the_rnn_with_the_simple_config_bits(flow):
    config = json.load(open(flow.config))
    rnn = config["rnn"]
    assert rnn["quant_enable"] is True
    a16w8 = flow.config_name == "a16w8"
    assert rnn["activation_quant_params"]["num_bits"] == (16 if a16w8 else 8)
    assert rnn["activation_quant_params"]["act_algo"] == ("ifmr" if a16w8 else "hfmg")
    assert rnn["weight_quant_params"]["num_bits"] == (8 if a16w8 else 4)
    assert rnn["weight_quant_params"]["channel_wise"] is True


def test_record_has_hidden_state_and_recurrence_weight_factors(flow):
    records = read_record(flow.record)
    assert list(records) == ["conv", "rnn"]
    rec = records["rnn"]
    rows = 16 * (4 if flow.kind == "LSTM" else 3)
    assert len(rec.scale_w) == rows and list(rec.offset_w) == [0] * rows
    assert len(rec.scale_r) == rows and list(rec.offset_r) == [0] * rows
    assert rec.act_type == ("INT16" if flow.config_name == "a16w8" else "INT8")
    assert rec.wts_type == ("INT8" if flow.config_name == "a16w8" else "INT4")
    assert rec.HasField("scale_h") and rec.scale_h > 0 and rec.HasField("offset_h")
    bits = int(rec.act_type[3:])
    assert -(2 ** (bits - 1)) <= rec.offset_h < 2 ** (bits - 1)
    # ARQ per gate row (symmetric): max|row| / (2^(b-1) - 1), or / 2^(b-1)
    # when the row's extreme is negative; the record is in ONNX gate order.
    wbits = int(rec.wts_type[3:])
    for tensor, scales in (("weight_ih_l0", rec.scale_w), ("weight_hh_l0", rec.scale_r)):
        weight = getattr(flow.model.rnn, tensor).detach().numpy()
        negative = np.abs(weight.min(axis=1)) > np.abs(weight.max(axis=1))
        steps = np.where(negative, 2 ** (wbits - 1), 2 ** (wbits - 1) - 1).astype(np.float32)
        expected = np.abs(weight).max(axis=1) / steps
        np.testing.assert_allclose(gate_rows_to_torch(scales, flow.kind, rows), expected, rtol=1e-6)


def test_all_outputs_pass_the_checker(flow):
    onnx.checker.check_model(onnx.load(flow.fake_quant), full_check=True)
    onnx.checker.check_model(onnx.load(flow.qdq), full_check=True)
    # The deploy model's AMCT ops live in the default domain, where the checker
    # knows none of them: in a domain of their own the rest is checked.
    deploy = copy.deepcopy(onnx.load(flow.deploy))
    for node in deploy.graph.node:
        if node.op_type.startswith(("Ascend", "Basic")):
            node.domain = "ascend.test"
    deploy.opset_import.add(domain="ascend.test", version=1)
    onnx.checker.check_model(deploy)


def test_fake_quant_matches_the_integer_simulation_and_the_float_model(flow):
    records = read_record(flow.record)
    expected = simulate(flow.model, flow.kind, records, flow.test_input)
    got = run_ort(flow.fake_quant, flow.feeds(flow.test_input))
    span = float(expected.max() - expected.min())
    assert np.max(np.abs(got - expected)) <= 1e-4 * span
    with torch.no_grad():
        reference = flow.model(*flow.test_input).numpy()
    assert cosine(got, reference) >= (0.995 if records["rnn"].act_type == "INT16" else 0.98)
    # The QDQ model keeps the RNN in float, behind the quantized Conv1d.
    qdq = run_ort(flow.qdq, flow.feeds(flow.test_input))
    assert cosine(qdq, reference) >= 0.99


def test_deploy_model_holds_amcts_rnn_op_node_by_node(flow):
    model = onnx.load(flow.deploy)
    records = read_record(flow.record)
    rec = records["rnn"]
    nodes = {n.name: n for n in model.graph.node}
    node = nodes["rnn"]
    lstm = flow.kind == "LSTM"
    assert node.op_type == ("BasicLSTMInplaceFillWindowCache" if lstm else "BasicGRUInplaceFillWindowCache")
    assert node.domain == ""
    assert not any(n.op_type in ("LSTM", "GRU") for n in model.graph.node)
    # X, W, R, initial_h, [initial_c,] B, sequence_lens (none), clean_cache (none), dequant param.
    inputs = list(node.input)
    assert len(inputs) == (9 if lstm else 8)
    assert inputs[-1] == "rnn.dequant.param" and inputs[-2] == "" and inputs[-3] == ""
    init = initializers(flow.deploy)
    w, r, b = init[inputs[1]], init[inputs[2]], init[inputs[5 if lstm else 4]]
    rows = 16 * (4 if lstm else 3)
    wbits = int(rec.wts_type[3:])
    packed = 2 if wbits == 4 else 1
    assert w.dtype == np.int8 and w.shape == (1, rows, 8 // packed)
    assert r.dtype == np.int8 and r.shape == (1, rows, 16 // packed)
    assert b.dtype == np.int32 and b.shape == (1, 2 * rows)
    # The state inputs come from the graph inputs h0 (c0).
    producers = {o: n for n in model.graph.node for o in n.output}
    graph_inputs = {i.name for i in model.graph.input}

    def from_input(tensor):
        while tensor not in graph_inputs:
            tensor = producers[tensor].input[0]
        return tensor

    assert from_input(inputs[3]) == "h0"
    if lstm:
        assert from_input(inputs[4]) == "c0"
    # X is not quantized in front of the op: the op does it with its attributes.
    assert producers[inputs[0]].op_type != "AscendQuant"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    bits = int(rec.act_type[3:])
    assert attrs["quant_dtype"] == (6 if bits == 16 else 2)
    assert attrs["hidden_size"] == 16 and attrs["direction"] == b"forward"
    assert attrs["quant_sqrt_mode_x"] == 0 and attrs["quant_sqrt_mode_h"] == 0
    assert attrs["quant_scale_x"] == np.float32(1.0 / np.float64(np.float32(rec.scale_d)))
    assert attrs["quant_offset_x"] == rec.offset_d
    assert attrs["quant_scale_h"] == np.float32(1.0 / np.float64(np.float32(rec.scale_h)))
    assert attrs["quant_offset_h"] == rec.offset_h
    assert attrs[("input_forget" if lstm else "linear_before_reset")] == (0 if lstm else 1)
    # The dequant parameters: scale_d * scale_w per row, then scale_h * scale_r,
    # as float32 bits in the low word.
    param = init["rnn.dequant.param"]
    assert param.dtype == np.uint64 and param.shape == (2 * rows,)
    expected = np.concatenate([np.asarray(rec.scale_w, np.float32) * np.float32(rec.scale_d),
                               np.asarray(rec.scale_r, np.float32) * np.float32(rec.scale_h)]).astype(np.float32)
    np.testing.assert_array_equal((param & 0xFFFFFFFF).astype(np.uint32), expected.view(np.uint32))
    assert np.all(param >> 32 == 0)
    # The bias halves are on the two accumulators' grids.
    fake = initializers(flow.fake_quant)
    fake_node = next(n for n in onnx.load(flow.fake_quant).graph.node if n.name == "rnn")
    np.testing.assert_allclose(fake[fake_node.input[3]], b * expected.astype(np.float32)[None, :], rtol=1e-6)
    # The Conv1d in front is an ordinary AscendQuant -> Conv -> AscendDequant.
    assert nodes["conv.quant"].op_type == "AscendQuant" and nodes["conv.dequant"].op_type == "AscendDequant"


def test_fake_quant_model_quantizes_x_and_initial_h_in_front_of_a_standard_op(flow):
    model = onnx.load(flow.fake_quant)
    node = next(n for n in model.graph.node if n.name == "rnn")
    assert node.op_type == flow.kind
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers[node.input[0]].name == "rnn.antiquant.fake_antiquant.mul"
    assert producers[node.input[5]].name == "rnn.h_antiquant.fake_antiquant.mul"
    names = {n.name for n in model.graph.node}
    assert {"rnn.quant.fakequant.round", "rnn.h_quant.fakequant.clip"} <= names


def test_save_model_accepts_an_rnn_record_written_by_amct(flow, tmp_path):
    # The record as AMCT's text_format writes it (fields in field-number
    # order), with AMCT's per-gate scale lists of 4 (LSTM) / 3 (GRU) values.
    records = read_record(flow.record)
    gates = 4 if flow.kind == "LSTM" else 3
    lines = []
    for name, rec in records.items():
        lines += ["record {", f'  key: "{name}"', "  value {", f"    scale_d: {np.float32(rec.scale_d)}",
                  f"    offset_d: {rec.offset_d}"]
        scale_w = list(rec.scale_w) if name == "conv" else [max(rec.scale_w)] * gates
        lines += [f"    scale_w: {np.float32(s)}" for s in scale_w]
        lines += ["    offset_w: 0" for _ in scale_w]
        lines += [f'    act_type: "{rec.act_type}"', f'    wts_type: "{rec.wts_type}"']
        if name == "rnn":
            lines += [f"    scale_h: {np.float32(rec.scale_h)}", f"    offset_h: {rec.offset_h}"]
            lines += [f"    scale_r: {np.float32(max(rec.scale_r))}" for _ in range(gates)]
            lines += ["    offset_r: 0" for _ in range(gates)]
        lines += ["  }", "}"]
    amct_record = tmp_path / "amct_record.txt"
    amct_record.write_text("\n".join(lines) + "\n")
    amct.save_model(flow.modified, str(amct_record), str(tmp_path / "amct" / "net"))
    deploy = onnx.load(str(tmp_path / "amct" / "net_deploy_model.onnx"))
    node = next(n for n in deploy.graph.node if n.name == "rnn")
    param = numpy_helper.to_array(next(t for t in deploy.graph.initializer if t.name == "rnn.dequant.param"))
    rows = 16 * gates
    # Per-gate scales apply to every row of their gate.
    expected = np.float32(max(records["rnn"].scale_w)) * np.float32(records["rnn"].scale_d)
    assert param.shape == (2 * rows,) and np.all((param[:rows] & 0xFFFFFFFF).astype(np.uint32) ==
                                                np.float32(expected).view(np.uint32))
    assert node.op_type.startswith("Basic")
    fake = str(tmp_path / "amct" / "net_fake_quant_model.onnx")
    got = run_ort(fake, flow.feeds(flow.test_input))
    with torch.no_grad():
        reference = flow.model(*flow.test_input).numpy()
    assert cosine(got, reference) >= 0.95


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("rnn_args,reason", [
    ({"num_layers": 2}, "num_layers is 2; only single-layer {kind} modules are quantizable"),
    ({"bidirectional": True}, "it is bidirectional; only single-direction {kind} modules are quantizable"),
])
def test_module_limits_keep_the_layer_float_with_a_reason(kind, rnn_args, reason, tmp_path, caplog):
    model = rnn_net(kind, **rnn_args)
    layers = rnn_args.get("num_layers", 1) * (2 if rnn_args.get("bidirectional") else 1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, generator=gen)
    state = torch.zeros(layers, 2, 16)
    inputs = (x, state, state) if kind == "LSTM" else (x, state)
    assert f"layer 'rnn' stays in float: {reason.format(kind=kind)}" in float_layer_notes(model, inputs, tmp_path,
                                                                                          caplog)


def float_layer_notes(model, inputs, tmp_path, caplog):
    """The warnings of create_quant_config + quantize_model, which quantize only the Conv1d."""
    config = str(tmp_path / "c.json")
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        amct.create_quant_config(config, model, inputs)
        assert [k for k, v in json.load(open(config)).items() if isinstance(v, dict)] == ["conv"]
        amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model, inputs)
    return caplog.text


class NoStateNet(nn.Module):
    """An RNN whose initial state torch makes up (zeros): not a model input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.rnn = nn.GRU(8, 16)

    def forward(self, x):
        out, _ = self.rnn(self.conv(x).permute(2, 0, 1))
        return out


def test_rnn_without_a_state_input_stays_float_with_a_reason(tmp_path, caplog):
    notes = float_layer_notes(NoStateNet().eval(), torch.randn(2, 4, 6), tmp_path, caplog)
    assert ("layer 'rnn' stays in float: its initial_h (input 5) does not come from a model input; pass the "
            "initial state (hx) to forward()") in notes


def test_record_without_hidden_state_factors_is_refused(flow, tmp_path):
    text = open(flow.record).read()
    lines = [line for line in text.splitlines() if "scale_h" not in line]
    broken = tmp_path / "record.txt"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(RuntimeError) as error:
        amct.save_model(flow.modified, str(broken), str(tmp_path / "out" / "net"))
    assert str(error.value) == (
        f"record file '{broken}', layer 'rnn': scale_h is missing: the hidden state of this {flow.kind} was not "
        "calibrated (save_model was called before the calibration model ran batch_num batches)")


def test_calibration_refuses_an_rnn_call_without_its_state(tmp_path):
    model = rnn_net("GRU")
    inputs = rnn_inputs("GRU", 2, torch.Generator().manual_seed(2))
    config = str(tmp_path / "c.json")
    amct.create_quant_config(config, model, inputs)
    calib = amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model, inputs)
    with pytest.raises(ValueError) as error:
        calib.rnn(torch.randn(6, 2, 8))
    assert str(error.value) == ("calibration: GRU layer 'rnn' was called without its initial state hx; AMCT "
                                "quantizes LSTM/GRU layers whose state is an input of the model")


class DropoutModuleNet(nn.Module):
    """HF BERT's layout: a module attribute named like an RNN setting (dropout)."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(8, 8)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.dense(x))


def test_attributes_named_like_rnn_settings_are_not_taken_for_them(tmp_path):
    config = str(tmp_path / "c.json")
    amct.create_quant_config(config, DropoutModuleNet().eval(), torch.randn(2, 8))
    with open(config, encoding="utf-8") as f:
        assert [k for k, v in json.load(f).items() if isinstance(v, dict)] == ["dense"]
