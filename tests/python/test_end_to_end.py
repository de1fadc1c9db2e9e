"""The full PTQ flow on the spec's layer mix and on a ResNet-style model:
the fake-quant model computes the integer arithmetic the record describes,
stays close to the float model, and the files have AMCT's layout."""

import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import torch

from int_sim import integer_model
from record_proto import read_record

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "data", "golden")


def run_ort(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_all_outputs_written(quantized):
    for path in (quantized.config, quantized.modified, quantized.record, quantized.fake_quant, quantized.deploy):
        assert os.path.getsize(path) > 0, path


def test_fake_quant_matches_integer_simulation(quantized):
    records = read_record(quantized.record)
    sim = integer_model(quantized.model, records, quantized.fuse)
    with torch.no_grad():
        expected = sim(quantized.test_input).numpy()
    got = run_ort(quantized.fake_quant, quantized.test_input)
    span = float(expected.max() - expected.min())
    assert np.max(np.abs(got - expected)) <= 1e-4 * span


def test_fake_quant_close_to_float_model(quantized):
    onnx.checker.check_model(onnx.load(quantized.fake_quant))
    with torch.no_grad():
        reference = quantized.model(quantized.test_input).numpy()
    got = run_ort(quantized.fake_quant, quantized.test_input)
    assert got.shape == reference.shape
    assert cosine(got, reference) >= 0.99


def test_dynamic_batch_is_kept(quantized):
    x = torch.randn(1, *quantized.shape)
    assert run_ort(quantized.fake_quant, x).shape[0] == 1


def test_record_scales_match_independent_arq(quantized):
    records = read_record(quantized.record)
    sim_model = integer_model(quantized.model, {}, quantized.fuse)
    for name, rec in records.items():
        module = sim_model.get_submodule(name)
        assert rec.act_type == "INT8"
        assert -128 <= rec.offset_d <= 127 and rec.scale_d > 0
        if isinstance(module, torch.nn.AvgPool2d):
            assert list(rec.scale_w) == [1.0] and list(rec.offset_w) == [0] and not rec.HasField("wts_type")
            continue
        w = module.weight.detach().float()
        if isinstance(module, torch.nn.ConvTranspose2d):
            w = w.transpose(0, 1)
        rows = w.reshape(w.shape[0], -1)
        if isinstance(module, torch.nn.Linear):
            rows = rows.reshape(1, -1)
        hi, lo = rows.max(dim=1).values, rows.min(dim=1).values
        divisor = torch.where(lo.abs() > hi.abs(), 128.0, 127.0)
        expected = torch.maximum(hi.abs(), lo.abs()) / divisor
        np.testing.assert_allclose(list(rec.scale_w), expected.numpy(), rtol=1e-6)
        assert list(rec.offset_w) == [0] * len(rec.scale_w)
        assert rec.wts_type == "INT8"


def _skeleton(text):
    return re.sub(r"(scale_d|offset_d|scale_w|offset_w): -?[0-9.e+-]+", r"\1: #", text)


def _golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("AMCT_UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_config_matches_golden(quantized):
    name = os.path.basename(quantized.save_path)
    with open(quantized.config, encoding="utf-8") as f:
        text = f.read()
    assert text == _golden(f"{name}_config.json", text)


def test_record_layout_matches_golden(quantized):
    name = os.path.basename(quantized.save_path)
    with open(quantized.record, encoding="utf-8") as f:
        text = _skeleton(f.read())
    assert text == _golden(f"{name}_record_skeleton.txt", text)
