"""ONNX external data through the whole flow, forced on a small model: the
export goes to the core as a model file with external data, the modified
ONNX and the three outputs keep their initializers in data files, and every
result equals the in-memory flow's (config, record, modified model, ONNX
Runtime outputs). `amct save-model` writes the same files."""

import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models import spec_net
from test_save_model_cli import CLI

import amct_pytorch as amct
from amct_pytorch import export

SHAPE = (3, 8, 8)


def run_flow(root, external):
    """create_quant_config, quantize_model, calibration and save_model on
    SpecNet with fc left in float; `external` forces external data everywhere."""
    model = spec_net(seed=3)
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(4, *SHAPE, generator=gen) for _ in range(2)]
    limit = 1 if external else None
    paths = {name: str(root / name) for name in ("config.json", "modified.onnx", "record.txt")}
    amct.create_quant_config(paths["config.json"], model, batches[0], skip_layers=["fc"], batch_num=2)
    calib = amct.quantize_model(paths["config.json"], paths["modified.onnx"], paths["record.txt"], model, batches[0],
                                input_names=["input"], output_names=["output"], external_data_limit=limit)
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    written = amct.save_model(paths["modified.onnx"], paths["record.txt"], str(root / "out" / "net"),
                              external_data_limit=limit)
    return model, calib, paths, written


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    memory = run_flow(tmp_path_factory.mktemp("memory"), external=False)
    threshold = export.EXTERNAL_EXPORT_BYTES
    export.EXTERNAL_EXPORT_BYTES = 0  # every export goes through a file with external data
    try:
        external = run_flow(tmp_path_factory.mktemp("external"), external=True)
    finally:
        export.EXTERNAL_EXPORT_BYTES = threshold
    return memory, external


def external_initializers(path):
    model = onnx.load(path, load_external_data=False)
    return sorted(t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)


def load_resolved(path):
    """The model with its external data read in, as if it had never been external."""
    model = onnx.load(path)
    for tensor in model.graph.initializer:
        tensor.ClearField("data_location")
    return model


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_outputs_and_their_data_files_are_written(flows):
    _, (_, _, paths, written) = flows
    root = os.path.dirname(paths["modified.onnx"])
    assert os.path.getsize(os.path.join(root, "modified.onnx.data")) > 0
    assert "conv1.weight" in external_initializers(paths["modified.onnx"])
    out = os.path.dirname(written[0])
    assert sorted(os.listdir(out)) == [
        "conv1.bias_fakequant.external", "conv1.weight_deploy.external", "conv1.weight_fakequant.external",
        "deconv.bias_fakequant.external", "deconv.weight_deploy.external", "deconv.weight_fakequant.external",
        "dw.weight_deploy.external", "dw.weight_fakequant.external",
        "fc.bias_deploy.external", "fc.bias_fakequant.external", "fc.weight_deploy.external",
        "fc.weight_fakequant.external",
        "net_deploy_model.onnx", "net_fake_quant_model.onnx", "net_qdq_model.onnx", "net_qdq_model.onnx.data"]
    for path in written:
        assert external_initializers(path), path
    # A path: the checker reads the data files too. The deploy model's
    # AscendQuant/AscendDequant and the modified model's op_data_type
    # attributes are nothing the checker knows.
    for path in written[1:]:
        onnx.checker.check_model(path)


def test_text_outputs_equal_the_in_memory_flow(flows):
    (_, _, memory, _), (_, _, external, _) = flows
    for name in ("config.json", "record.txt"):
        with open(memory[name], "rb") as a, open(external[name], "rb") as b:
            assert a.read() == b.read(), name
    assert load_resolved(memory["modified.onnx"]) == load_resolved(external["modified.onnx"])


def test_models_compute_what_the_in_memory_flow_computes(flows):
    (_, _, _, memory), (_, _, _, external) = flows
    x = np.random.default_rng(7).standard_normal((4, *SHAPE)).astype(np.float32)
    for kind, a, b in zip(("deploy", "fake_quant", "qdq"), memory, external):
        assert load_resolved(a) == load_resolved(b), kind
        if kind != "deploy":  # AscendQuant/AscendDequant do not run in ONNX Runtime
            expected = run_ort(a, x)
            np.testing.assert_array_equal(run_ort(b, x), expected)
            assert np.abs(expected).max() > 0


def test_calibration_model_owns_its_tensors(flows):
    _, (model, calib, _, _) = flows
    fresh = spec_net(seed=3)
    for name, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[name]), name
    # fc stays float: same values as the user's, in its own storage.
    assert torch.equal(calib.fc.weight, model.fc.weight)
    assert calib.fc.weight.data_ptr() != model.fc.weight.data_ptr()
    assert calib.conv1.sub_module.weight.data_ptr() != model.conv1.weight.data_ptr()


@pytest.mark.skipif(CLI is None, reason="amct CLI not built (set AMCT_CLI or build build/<dir>/amct)")
def test_cli_save_model_writes_the_same_files(flows, tmp_path):
    _, (_, _, paths, written) = flows
    result = subprocess.run([CLI, "save-model", "--model", paths["modified.onnx"], "--record", paths["record.txt"],
                             "--save-path", str(tmp_path / "net"), "--external-data-limit", "1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    out = os.path.dirname(written[0])
    assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(out))
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as a, open(tmp_path / name, "rb") as b:
            assert a.read() == b.read(), name
    bad = subprocess.run([CLI, "save-model", "--model", paths["modified.onnx"], "--record", paths["record.txt"],
                          "--save-path", str(tmp_path / "x"), "--external-data-limit", "0"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "--external-data-limit: '0' is not a positive number of bytes" in bad.stderr


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(amct.AmctValueError, match=r"^save_model\(\): external_data_limit must be a positive number "
                                                  r"of bytes, got 0$"):
        amct.save_model(str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), str(tmp_path / "out"),
                        external_data_limit=0)


def test_missing_data_file_is_named(flows, tmp_path):
    _, (_, _, paths, _) = flows
    model = str(tmp_path / "modified.onnx")
    with open(paths["modified.onnx"], "rb") as src, open(model, "wb") as dst:
        dst.write(src.read())
    with pytest.raises(amct.AmctFileNotFoundError) as error:
        amct.save_model(model, paths["record.txt"], str(tmp_path / "out" / "net"))
    assert str(error.value).endswith(f"of ONNX model '{model}': external data file '{tmp_path}/modified.onnx.data' "
                                     "does not exist")
    assert not os.path.exists(tmp_path / "out")


def test_outputs_saved_together_equal_outputs_saved_one_by_one(flows, tmp_path):
    """save_model builds the QDQ model from the modified model itself and reads
    the file again for the deploy and fake-quant models: the same files as
    calls that each write one output (and read the file once)."""
    _, (_, _, paths, written) = flows
    for kind, together in zip(("deploy", "fake_quant", "qdq"), written):
        (alone,) = amct.save_model(paths["modified.onnx"], paths["record.txt"], str(tmp_path / kind / "net"),
                                   outputs=(kind,), external_data_limit=1)
        assert load_resolved(alone) == load_resolved(together), kind


class TwoLinears(torch.nn.Module):
    """A Linear on a 3-D input (MatMul over its transposed weight, which the
    modified ONNX stores as [in, out]) and one on a 2-D input (Gemm, [out, in])."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(15, 4)

    def forward(self, x):
        return self.head(torch.relu(self.proj(x)).flatten(1))


def quantize_two_linears(root, external):
    torch.manual_seed(11)
    model = TwoLinears().eval()
    x = torch.randn(2, 3, 6)
    config, modified = str(root / "config.json"), str(root / "modified.onnx")
    amct.create_quant_config(config, model, x)
    calib = amct.quantize_model(config, modified, str(root / "record.txt"), model, x,
                                external_data_limit=1 if external else None)
    return model, calib, modified


def test_calibration_weights_are_the_modified_models_weights(tmp_path, monkeypatch):
    """The calibration model takes over the modified ONNX's fake-quantized
    weights (moved, and turned into torch's layout in place): the same values
    with and without external data, and the graph's values transposed where
    the graph holds [in, out]."""
    _, memory, _ = quantize_two_linears(tmp_path / "memory", external=False)
    monkeypatch.setattr(export, "EXTERNAL_EXPORT_BYTES", 0)
    model, calib, modified = quantize_two_linears(tmp_path / "external", external=True)
    graph = onnx.load(modified).graph
    assert external_initializers(modified)
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    assert (nodes["proj"].op_type, nodes["head"].op_type) == ("MatMul", "Gemm")
    for name, in_out in (("proj", True), ("head", False)):
        weight = getattr(calib, name).sub_module.weight.detach().numpy()
        np.testing.assert_array_equal(weight, getattr(memory, name).sub_module.weight.detach().numpy())
        in_graph = initializers[nodes[name].input[1]]
        np.testing.assert_array_equal(weight, in_graph.T if in_out else in_graph)
        user = getattr(model, name).weight.detach().numpy()
        assert weight.shape == user.shape
        # Fake-quantized: near the user's weight (within half a step), not equal to it.
        assert not np.array_equal(weight, user)
        np.testing.assert_allclose(weight, user, atol=np.abs(user).max() / 127)
