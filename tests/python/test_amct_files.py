"""AMCT's own files and behaviour: a modified ONNX laid out as AMCT writes it
(TorchScript export at opset 11, initializers as graph inputs, module-named
nodes, `<module>.sub_module.*` initializers, op_data_type attributes) goes
through AMCT's three-argument save_model; calibration sees float ConvTranspose
weights as AMCT's does; errors that AMCT raises as RuntimeError are caught by
`except RuntimeError`."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import amct_pytorch as amct
from models import spec_net
from record_proto import read_record

# TorchScript node names of the spec network's layers and the module names AMCT gives them.
AMCT_NODE_NAMES = {"/conv1/Conv": "conv1", "/dw/Conv": "dw", "/deconv/ConvTranspose": "deconv",
                   "/pool/AveragePool": "pool", "/fc/Gemm": "fc"}


def calibrate(model, root, **options):
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(4, 3, 8, 8, generator=gen) for _ in range(2)]
    config, modified, record = str(root / "config.json"), str(root / "modified.onnx"), str(root / "record.txt")
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, batches[0], **options)
    with torch.no_grad():
        for batch in batches:
            calib(batch)
    return calib, modified, record


def amct_style_modified_onnx(model, ours, path):
    """The float model exported the way AMCT exports it, with the BN-fused,
    fake-quantized weights of `ours` (a modified ONNX of this flow)."""
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), buffer, dynamo=False, opset_version=11,
                      keep_initializers_as_inputs=True, input_names=["in_data.0"], output_names=["output"],
                      dynamic_axes={"in_data.0": {0: "batch"}, "output": {0: "batch"}})
    exported = onnx.load_from_string(buffer.getvalue())
    ours_weights = {i.name: i for i in ours.graph.initializer}
    ours_nodes = {n.name: n for n in ours.graph.node}
    renamed = {}
    for node in exported.graph.node:
        if node.name not in AMCT_NODE_NAMES:
            continue
        layer = AMCT_NODE_NAMES[node.name]
        node.name = layer
        node.attribute.append(onnx.helper.make_attribute("op_data_type", "float"))
        for index, suffix in ((1, "weight"), (2, "bias")):
            if index < len(node.input):
                renamed[node.input[index]] = f"{layer}.sub_module.{suffix}"
                source = ours_nodes[layer].input[index]
                renamed[(node.input[index], "data")] = onnx.numpy_helper.to_array(ours_weights[source])
    for tensor in list(exported.graph.initializer):
        if tensor.name in renamed:
            data = renamed[(tensor.name, "data")].reshape(onnx.numpy_helper.to_array(tensor).shape)
            tensor.CopyFrom(onnx.numpy_helper.from_array(data.astype(np.float32), renamed[tensor.name]))
    for node in exported.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    for value in exported.graph.input:
        value.name = renamed.get(value.name, value.name)
    onnx.save(exported, path)
    return exported


def test_save_model_takes_a_modified_onnx_and_record_written_by_amct(tmp_path):
    model = spec_net()
    _, modified, record = calibrate(spec_net(), tmp_path)
    # AMCT fuses the BN into conv1 before export.
    fused = spec_net()
    fused.conv1 = torch.nn.utils.fusion.fuse_conv_bn_eval(fused.conv1, fused.bn)
    fused.bn = torch.nn.Identity()
    amct_modified = str(tmp_path / "amct_modified.onnx")
    exported = amct_style_modified_onnx(fused, onnx.load(modified), amct_modified)
    assert exported.opset_import[0].version == 11
    assert "conv1.sub_module.weight" in {i.name for i in exported.graph.input}

    written = amct.save_model(amct_modified, record, str(tmp_path / "out" / "net"))
    assert [p.rsplit("/", 1)[1] for p in written] == ["net_deploy_model.onnx", "net_fake_quant_model.onnx",
                                                      "net_qdq_model.onnx"]
    deploy, fake_quant, qdq = (onnx.load(p) for p in written)
    assert deploy.opset_import[0].version == 11 and fake_quant.opset_import[0].version == 11
    assert qdq.opset_import[0].version == 13
    onnx.checker.check_model(fake_quant, full_check=True)
    onnx.checker.check_model(qdq, full_check=True)
    quant = {n.name: n for n in deploy.graph.node}
    assert {"conv1.quant", "dw.quant", "deconv.quant", "pool.quant", "fc.quant", "fc.dequant"} <= set(quant)

    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        reference = model(x).numpy()
    outputs = []
    for path in written[1:]:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    fake, qdq_out = outputs
    centered = reference - reference.mean(0)
    cosine = np.sum(centered * (fake - fake.mean(0))) / (np.linalg.norm(centered) * np.linalg.norm(fake - fake.mean(0)))
    assert cosine > 0.98
    assert np.max(np.abs(fake - qdq_out)) <= 0.02 * float(fake.max() - fake.min())


def test_convtranspose_weights_stay_float_during_calibration_by_default(tmp_path):
    model = spec_net()
    float_weight = model.deconv.weight.detach().clone()
    calib, modified, record = calibrate(model, tmp_path / "amct")
    assert torch.equal(calib.deconv.sub_module.weight.detach(), float_weight)
    onnx_weight = {n.name: n for n in onnx.load(modified).graph.node}["deconv"].input[1]
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(modified).graph.initializer}[onnx_weight]
    assert np.array_equal(stored, float_weight.numpy())
    # Other layers calibrate on their fake-quantized weights.
    assert not torch.equal(calib.dw.sub_module.weight.detach(), model.dw.weight.detach())

    calib_q, _, record_q = calibrate(spec_net(), tmp_path / "fq", fake_quantize_deconv_weights=True)
    quantized = calib_q.deconv.sub_module.weight.detach()
    assert not torch.equal(quantized, float_weight)
    # On the grid: per output channel (dim 1 of a ConvTranspose weight), w / scale_w is an integer.
    scales = torch.tensor(list(read_record(record_q)["deconv"].scale_w))
    steps = quantized / scales.view(1, -1, 1, 1)
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    # The activations downstream of the deconvolution see different values.
    assert open(record).read() != open(record_q).read()


def test_amct_runtime_errors_are_caught_as_runtime_error(tmp_path):
    model = spec_net()
    sample = torch.randn(2, 3, 8, 8)
    config = str(tmp_path / "c.json")
    amct.create_quant_config(config, model, sample)
    with pytest.raises(RuntimeError, match="input_names must be a list of strings"):
        amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model, sample,
                            input_names=[1])
    with pytest.raises(RuntimeError, match="dynamic_axes"):
        amct.quantize_model(config, str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), model, sample,
                            dynamic_axes={"input": {0: 1}})
    with pytest.raises(RuntimeError, match="input_data must be a torch.Tensor or a tuple"):
        amct.create_quant_config(config, model, [sample])
    # The precise classes still hold.
    with pytest.raises(TypeError):
        amct.create_quant_config(config, model, [sample])

    _, modified, record = calibrate(spec_net(), tmp_path / "flow")
    text = open(record).read().replace('act_type: "INT8"', 'act_type: "INT9"', 1)
    bad = tmp_path / "bad_record.txt"
    bad.write_text(text)
    with pytest.raises(RuntimeError, match="act_type is \"INT9\"") as error:
        amct.save_model(modified, str(bad), str(tmp_path / "out" / "net"))
    assert isinstance(error.value, ValueError) and isinstance(error.value, amct.AmctValueError)
    with pytest.raises(ValueError, match="not exist|No such file|does not exist"):
        amct.save_model(str(tmp_path / "absent.onnx"), record, str(tmp_path / "out" / "net"))
