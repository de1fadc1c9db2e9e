"""Bias-less convs followed by BatchNorm through the whole flow. torch's
exporter computes their zero bias from the weight's shape (for Conv3d through
a Concat); fold_constant_inputs must turn it into constants so that the
BatchNorm is fused and save_model finds only constant weights and biases."""

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import torch
from torch import nn

import amct_pytorch as amct
from record_proto import read_record


def _trained_batchnorms(model, seed):
    """BatchNorm statistics that are not the identity, so fusion matters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.2)
    return model.eval()


class Net3d(nn.Module):
    """AMCT's Net3d: Conv3d(bias=False) + BatchNorm3d + ReLU, then a Conv3d."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv3d(3, 8, 3, bias=False), nn.BatchNorm3d(8), nn.ReLU())
        self.layer2 = nn.Conv3d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.layer2(self.layer1(x))


class Net2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Conv2d(8, 4, 3, padding=1, groups=2, bias=False)

    def forward(self, x):
        return self.layer2(self.layer1(x))


class NetDeconv(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.ConvTranspose2d(3, 8, 2, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.layer2(self.layer1(x))


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def quantize(tmp_path, model, shape, batch_num=3):
    """Runs create_quant_config -> quantize_model -> batch_num calibration
    batches -> save_model with the config create_quant_config wrote; returns
    the modified ONNX, the record and the cosine of the fake-quant model
    against the float model on held-out inputs."""
    gen = torch.Generator().manual_seed(7)
    batches = [torch.randn(4, *shape, generator=gen) for _ in range(batch_num)]
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, batches[0], batch_num=batch_num)
    calib = amct.quantize_model(config, modified, record, model, batches[0], input_names=["x"], output_names=["y"],
                                dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    prefix = str(tmp_path / "out" / "m")
    amct.save_model(modified, record, prefix)
    held_out = torch.randn(8, *shape, generator=gen)
    session = ort.InferenceSession(prefix + "_fake_quant_model.onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": held_out.numpy()})[0]
    with torch.no_grad():
        ref = model(held_out).numpy()
    return onnx.load(modified), read_record(record), cosine(got, ref)


def op_types(model):
    return [n.op_type for n in model.graph.node]


def test_net3d_fuses_batchnorm_and_quantizes(tmp_path):
    torch.manual_seed(0)
    model = _trained_batchnorms(Net3d(), 1)
    modified, records, cos = quantize(tmp_path, model, (3, 6, 6, 6))
    assert "BatchNormalization" not in op_types(modified)
    assert sorted(records) == ["layer1.0", "layer2"]
    conv = next(n for n in modified.graph.node if n.op_type == "Conv")
    initializers = {t.name for t in modified.graph.initializer}
    # The fused BN gives the bias-less conv a constant bias of 8 channels.
    assert len(conv.input) == 3 and conv.input[2] in initializers
    bias = next(t for t in modified.graph.initializer if t.name == conv.input[2])
    assert list(bias.dims) == [8]
    # Conv3d takes symmetric activations only.
    assert all(r.offset_d == 0 for r in records.values())
    assert len(records["layer1.0"].scale_w) == 8
    assert cos >= 0.99, cos


def test_conv2d_without_bias_fuses_batchnorm(tmp_path):
    torch.manual_seed(0)
    model = _trained_batchnorms(Net2d(), 2)
    modified, records, cos = quantize(tmp_path, model, (3, 10, 10))
    assert "BatchNormalization" not in op_types(modified)
    assert sorted(records) == ["layer1.0", "layer2"]
    convs = [n for n in modified.graph.node if n.op_type == "Conv"]
    # The fused conv has a bias; the grouped conv keeps none (its zero bias was dropped).
    assert sorted(len(n.input) for n in convs) == [2, 3]
    assert cos >= 0.99, cos


def test_convtranspose2d_without_bias_then_batchnorm(tmp_path):
    torch.manual_seed(0)
    model = _trained_batchnorms(NetDeconv(), 3)
    modified, records, cos = quantize(tmp_path, model, (3, 5, 5))
    assert sorted(records) == ["layer1.0", "layer2"]
    assert len(records["layer1.0"].scale_w) == 8  # per output channel of the transposed conv
    # Only Conv+BN is fused (as in AMCT); the BN after the ConvTranspose stays.
    assert op_types(modified).count("BatchNormalization") == 1
    initializers = {t.name for t in modified.graph.initializer}
    for node in modified.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "BatchNormalization"):
            assert all(name in initializers for name in node.input[1:]), node.name
    assert cos >= 0.99, cos


def test_batchnorm_without_affine_parameters_gets_constant_parameters(tmp_path):
    """The exporter computes the scale and shift of BatchNorm(affine=False)
    from the activation's shape; they become initializers. Such a BN is not
    fused (only affine BNs are, as in AMCT), so it stays in the model."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, bias=False)
            self.bn = nn.BatchNorm2d(6, affine=False)
            self.head = nn.Conv2d(6, 2, 1)

        def forward(self, x):
            return self.head(torch.relu(self.bn(self.conv(x))))

    torch.manual_seed(0)
    model = Net().eval()
    model.bn.running_mean.uniform_(-0.2, 0.2)
    model.bn.running_var.uniform_(0.5, 1.5)
    modified, records, cos = quantize(tmp_path, model, (3, 8, 8))
    assert op_types(modified) == ["Conv", "BatchNormalization", "Relu", "Conv"]
    bn = modified.graph.node[1]
    values = {t.name: onnx.numpy_helper.to_array(t) for t in modified.graph.initializer}
    assert list(bn.input[1:]) == ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
    np.testing.assert_array_equal(values["bn.weight"], np.ones(6, np.float32))
    np.testing.assert_array_equal(values["bn.bias"], np.zeros(6, np.float32))
    np.testing.assert_array_equal(values["bn.running_mean"], model.bn.running_mean.numpy())
    assert sorted(records) == ["conv", "head"]
    assert cos >= 0.99, cos
