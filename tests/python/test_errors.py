"""Each kind of bad input gets a clear error that names the file, layer or
field; a failed call leaves earlier outputs intact."""

import json
import os
import shutil

import onnx
import pytest
import torch
from torch import nn

import amct_pytorch as amct
from models import spec_net

X = torch.randn(2, 3, 8, 8)


@pytest.fixture()
def flow(tmp_path):
    """A spec_net quantized and calibrated, with paths to every file."""
    model = spec_net()
    paths = {n: str(tmp_path / n) for n in ("config.json", "modified.onnx", "record.txt")}
    amct.create_quant_config(paths["config.json"], model, X)
    calib = amct.quantize_model(paths["config.json"], paths["modified.onnx"], paths["record.txt"], model, X)
    with torch.no_grad():
        calib(X)
    paths["save"] = str(tmp_path / "out" / "m")
    paths["model"] = model
    paths["calib"] = calib
    return paths


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def quantize(config, tmp_path, model=None, x=X):
    return amct.quantize_model(config, str(tmp_path / "mod.onnx"), str(tmp_path / "rec.txt"), model or spec_net(), x)


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        quantize(missing, tmp_path)


def test_malformed_json_names_file(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text('{"version": 1, "conv1": {')
    with pytest.raises(ValueError, match="bad.json"):
        quantize(str(config), tmp_path)


def test_unknown_key_names_layer_and_key(flow, tmp_path):
    cfg = json.loads(open(flow["config.json"]).read())
    cfg["conv1"]["activation_quant_params"]["clip_max"] = 3
    write(str(tmp_path / "c.json"), json.dumps(cfg))
    with pytest.raises(ValueError, match=r"(?s)(clip_max.*conv1|conv1.*clip_max)"):
        quantize(str(tmp_path / "c.json"), tmp_path)


def test_out_of_range_value_names_field(flow, tmp_path):
    cfg = json.loads(open(flow["config.json"]).read())
    cfg["fc"]["weight_quant_params"]["num_bits"] = 5
    write(str(tmp_path / "c.json"), json.dumps(cfg))
    with pytest.raises(ValueError, match=r"(?s)(num_bits.*fc|fc.*num_bits)"):
        quantize(str(tmp_path / "c.json"), tmp_path)


def test_skip_layers_errors(tmp_path):
    config = str(tmp_path / "c.json")
    with pytest.raises(ValueError, match="no_such_layer"):
        amct.create_quant_config(config, spec_net(), X, skip_layers=["no_such_layer"])
    with pytest.raises(ValueError, match="relu"):
        amct.create_quant_config(config, spec_net(), X, skip_layers=["relu"])
    assert not os.path.exists(config)


def test_wrong_input_data_type(tmp_path):
    with pytest.raises(TypeError, match="input_data"):
        amct.create_quant_config(str(tmp_path / "c.json"), spec_net(), [X])


def test_bad_dynamic_axes(flow, tmp_path):
    with pytest.raises(ValueError, match="negative"):
        amct.quantize_model(flow["config.json"], str(tmp_path / "m.onnx"), str(tmp_path / "r.txt"), spec_net(), X,
                            input_names=["input"], dynamic_axes={"input": {-1: "batch"}})


def test_export_failure_is_reported(tmp_path):
    class Unexportable(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow cannot be traced
                return self.fc(x)
            return self.fc(-x)

    with pytest.raises(RuntimeError, match="cannot be exported"):
        amct.create_quant_config(str(tmp_path / "c.json"), Unexportable(), torch.randn(2, 4))


def test_unsupported_layers_only(tmp_path):
    class OnlyLstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0]

    with pytest.raises(ValueError, match="[Nn]o layer"):
        amct.create_quant_config(str(tmp_path / "c.json"), OnlyLstm(), torch.randn(2, 3, 4))


def test_calibration_model_is_refused(flow, tmp_path):
    with pytest.raises(RuntimeError, match="CalibrationWrapper"):
        amct.create_quant_config(str(tmp_path / "c.json"), flow["calib"], X)


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        amct.create_quant_config(str(blocker / "c.json"), spec_net(), X)


def test_save_before_calibration_finished(tmp_path):
    model = spec_net()
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, X, batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, X)
    with torch.no_grad():
        calib(X)  # 1 of 2 batches
    with pytest.raises(RuntimeError, match="(?i)calibrat"):
        amct.save_model(modified, record, str(tmp_path / "out" / "m"))
    assert not os.path.exists(tmp_path / "out" / "m_deploy_model.onnx")


@pytest.mark.parametrize("mutate,pattern", [
    (lambda t: t[: len(t) // 2], "record"),
    (lambda t: t.replace('key: "conv1"', 'key: "ghost"'), "ghost"),
    (lambda t: t.replace('key: "conv1"', 'key: "relu"'), "relu"),
    (lambda t: t.replace("scale_d: ", "scale_d: nan #", 1), "scale_d"),
    (lambda t: t.replace("offset_d: ", "offset_d: 300 #", 1), "offset_d"),
])
def test_bad_record_keeps_earlier_outputs(flow, mutate, pattern):
    amct.save_model(flow["modified.onnx"], flow["record.txt"], flow["save"])
    fake_quant = flow["save"] + "_fake_quant_model.onnx"
    with open(fake_quant, "rb") as f:
        before = f.read()
    bad = flow["record.txt"] + ".bad"
    write(bad, mutate(open(flow["record.txt"]).read()))
    with pytest.raises((ValueError, RuntimeError), match=pattern):
        amct.save_model(flow["modified.onnx"], bad, flow["save"])
    with open(fake_quant, "rb") as f:
        assert f.read() == before
    leftovers = [n for n in os.listdir(os.path.dirname(fake_quant)) if n.startswith(".")]
    assert leftovers == []


def test_layer_absent_from_record_stays_float(flow):
    text = open(flow["record.txt"]).read()
    start = text.index('record {\n  key: "fc"')
    end = text.index("\n}\n", start) + 3
    shutil.copy(flow["record.txt"], flow["record.txt"] + ".orig")
    write(flow["record.txt"], text[:start] + text[end:])
    amct.save_model(flow["modified.onnx"], flow["record.txt"], flow["save"])
    names = {n.name for n in onnx.load(flow["save"] + "_deploy_model.onnx").graph.node}
    assert "conv1.quant" in names and "fc.quant" not in names and "fc" in names
