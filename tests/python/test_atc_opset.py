"""Models that Ascend's ATC accepts: the modified, deploy and fake-quant models
are written at opset 11 by default (or the opset asked for), the QDQ model at
the lowest opset that holds it, and the numbers do not depend on the opset."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import amct_pytorch as amct

ASCEND_OPS = {"AscendQuant", "AscendDequant"}


class QuickStartMlp(nn.Module):
    """The README quick start's shape of model: Linear layers on N-D input (MatMul + Add)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """LayerNorm, GELU, Softmax and activation-activation MatMuls around Linear layers."""

    def __init__(self, dim=16):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.gelu = nn.GELU()
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1)
        x = x + self.proj(attention @ v)
        return x + self.fc2(self.gelu(self.fc1(self.norm2(x))))


class MobileBlockNet(nn.Module):
    """torchvision-style CNN pieces: depthwise conv, squeeze-excite with
    Hardsigmoid, Hardswish, SiLU, a residual Add, a branch Concat, MaxPool,
    nearest upsampling and global average pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.branch_a = nn.Conv2d(16, 8, 1)
        self.branch_b = nn.Conv2d(16, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = nn.functional.silu(self.dw(x))
        scale = nn.functional.hardsigmoid(self.se_expand(torch.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        x = x + y * scale
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = nn.functional.interpolate(self.pool(x), scale_factor=2.0, mode="nearest")
        x = nn.functional.adaptive_avg_pool2d(self.head(x), 1).flatten(1)
        return self.fc(x)


class Triangular(nn.Module):
    """torch.triu exports as Trilu, which exists from opset 14 only."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return torch.triu(self.fc(x))


def run_flow(model, shape, root, **quantize_options):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(4, *shape, generator=gen) for _ in range(2)]
    config, modified, record = str(root / "config.json"), str(root / "modified.onnx"), str(root / "record.txt")
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["input"],
                                output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                **quantize_options)
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    prefix = str(root / "out" / "model")
    amct.save_model(modified, record, prefix)
    return {"modified": modified, "record": record, "deploy": prefix + "_deploy_model.onnx",
            "fake_quant": prefix + "_fake_quant_model.onnx", "qdq": prefix + "_qdq_model.onnx"}


def opset_of(model):
    return {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"]


def without_op_data_type(model):
    for node in model.graph.node:
        kept = [a for a in node.attribute if a.name != "op_data_type"]
        del node.attribute[:]
        node.attribute.extend(kept)
    return model


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


FLOW_MODELS = [(QuickStartMlp, (5, 16)), (TransformerBlock, (6, 16)), (MobileBlockNet, (3, 16, 16))]
FLOW_IDS = ["quickstart-mlp", "transformer", "mobile-cnn"]


@pytest.mark.parametrize("factory, shape", FLOW_MODELS, ids=FLOW_IDS)
def test_models_are_written_at_opset_11_and_qdq_at_13(factory, shape, tmp_path):
    paths = run_flow(factory().eval(), shape, tmp_path)
    modified = onnx.load(paths["modified"])
    assert opset_of(modified) == 11 and modified.ir_version == 6
    onnx.checker.check_model(without_op_data_type(modified), full_check=True)
    fake_quant = onnx.load(paths["fake_quant"])
    assert opset_of(fake_quant) == 11 and [o.domain for o in fake_quant.opset_import] == [""]
    onnx.checker.check_model(fake_quant, full_check=True)
    qdq = onnx.load(paths["qdq"])
    assert opset_of(qdq) == 13
    onnx.checker.check_model(qdq, full_check=True)
    deploy = onnx.load(paths["deploy"])
    assert opset_of(deploy) == 11 and deploy.ir_version == 6
    # AMCT's deploy ops are custom ops in the default domain (the checker cannot
    # know them); every other node must exist at opset 11.
    assert {n.op_type for n in deploy.graph.node} & ASCEND_OPS == ASCEND_OPS
    for node in deploy.graph.node:
        if node.op_type not in ASCEND_OPS:
            assert onnx.defs.has(node.op_type, max_inclusive_version=11), node.op_type
    # The layers keep their module names.
    names = {n.name for n in fake_quant.graph.node}
    assert {"fc1", "fc2"} <= names or {"fc", "dw", "head", "stem.0"} <= names


@pytest.mark.parametrize("factory, shape", FLOW_MODELS, ids=FLOW_IDS)
def test_fake_quant_outputs_do_not_depend_on_the_opset(factory, shape, tmp_path):
    opset11 = run_flow(factory().eval(), shape, tmp_path / "o11")
    opset20 = run_flow(factory().eval(), shape, tmp_path / "o20", opset_version=20)
    assert opset_of(onnx.load(opset20["fake_quant"])) == 20
    assert open(opset11["record"]).read() == open(opset20["record"]).read()
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(9)).numpy()
    a, b = run_ort(opset11["fake_quant"], x), run_ort(opset20["fake_quant"], x)
    assert np.max(np.abs(a - b)) <= 1e-5 * float(a.max() - a.min())


def test_every_opset_from_11_to_15_is_declared_exactly(tmp_path):
    for opset in (12, 13, 15):
        paths = run_flow(QuickStartMlp().eval(), (5, 16), tmp_path / str(opset), opset_version=opset)
        for kind in ("modified", "deploy", "fake_quant"):
            assert opset_of(onnx.load(paths[kind])) == opset, kind
        assert opset_of(onnx.load(paths["qdq"])) == max(13, opset)


def test_an_op_without_a_form_at_the_opset_names_op_layer_and_lowest_opset(tmp_path):
    with pytest.raises(ValueError) as error:
        run_flow(Triangular().eval(), (6,), tmp_path)
    message = str(error.value)
    assert "Trilu" in message and "14" in message and "opset 11" in message
    paths = run_flow(Triangular().eval(), (6,), tmp_path / "ok", opset_version=14)
    assert opset_of(onnx.load(paths["fake_quant"])) == 14


def test_opset_version_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset_version 10 is not supported; expected 11 to 21"):
        run_flow(QuickStartMlp().eval(), (5, 16), tmp_path, opset_version=10)


def test_matmul_bias_is_float_and_qdq_computes_the_fake_quant_numbers(tmp_path):
    paths = run_flow(QuickStartMlp().eval(), (5, 16), tmp_path)
    deploy = onnx.load(paths["deploy"])
    nodes = {n.name: n for n in deploy.graph.node}
    # AMCT: dequantize right after the MatMul, then the float bias Add.
    assert nodes["fc1.dequant"].input[0] == nodes["fc1"].output[0]
    add = next(n for n in deploy.graph.node if n.op_type == "Add" and nodes["fc1.dequant"].output[0] in n.input)
    bias = next(i for i in deploy.graph.initializer if i.name in add.input)
    assert bias.data_type == onnx.TensorProto.FLOAT
    x = torch.randn(9, 5, 16, generator=torch.Generator().manual_seed(4)).numpy()
    fake, qdq = run_ort(paths["fake_quant"], x), run_ort(paths["qdq"], x)
    # Only QuantizeLinear's division vs the fake-quant multiplication by
    # float32(1/scale_d) can move a value by one step near a rounding boundary.
    assert np.max(np.abs(fake - qdq)) <= 1e-5 * float(fake.max() - fake.min()) + 1e-6
