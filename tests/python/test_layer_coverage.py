"""Every quantizable layer type of docs/amct-reference.md#supported-layers through the whole flow, checked
in ONNX Runtime against the float model; an LSTM whose state is not a model
input is left in float with a message, never a crash (test_rnn.py quantizes
LSTM/GRU)."""

import json
import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import amct_pytorch as amct
from record_proto import read_record


class Seq1d(nn.Module):
    """Conv1d -> ConvTranspose1d -> Linear on 3-D input (exported as MatMul)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose1d(8, 6, 2, stride=2)
        self.proj = nn.Linear(6, 5)

    def forward(self, x):
        y = torch.relu(self.deconv(torch.relu(self.conv(x))))
        return self.proj(y.transpose(1, 2))


class Volume(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4)))


class WithLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def run_flow(tmp_path, model, shape, batches=2):
    torch.manual_seed(0)
    model.eval()
    gen = torch.Generator().manual_seed(3)
    data = [torch.randn(4, *shape, generator=gen) for _ in range(batches)]
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, data[0], batch_num=batches)
    calib = amct.quantize_model(config, modified, record, model, data[0], input_names=["x"], output_names=["y"],
                                dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    with torch.no_grad():
        for batch in data:
            calib(batch)
    prefix = str(tmp_path / "out" / "m")
    amct.save_model(modified, record, prefix)
    test = torch.randn(5, *shape, generator=gen)
    session = ort.InferenceSession(prefix + "_fake_quant_model.onnx", providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": test.numpy()})[0]
    with torch.no_grad():
        ref = model(test).numpy()
    cos = float(np.dot(got.ravel(), ref.ravel()) / (np.linalg.norm(got) * np.linalg.norm(ref)))
    return json.load(open(config)), read_record(record), cos


def test_conv1d_convtranspose1d_and_matmul_linear(tmp_path):
    torch.manual_seed(0)
    config, records, cos = run_flow(tmp_path, Seq1d(), (4, 16))
    assert sorted(k for k, v in config.items() if isinstance(v, dict)) == ["conv", "deconv", "proj"]
    assert len(records["conv"].scale_w) == 8  # per output channel
    assert len(records["deconv"].scale_w) == 6  # per output channel of the transposed conv
    assert len(records["proj"].scale_w) == 1  # Linear is per-tensor
    assert cos >= 0.99


def test_conv3d_is_symmetric(tmp_path):
    torch.manual_seed(0)
    config, records, cos = run_flow(tmp_path, Volume(), (2, 4, 6, 6))
    assert config["conv"]["activation_quant_params"]["asymmetric"] is False
    assert records["conv"].offset_d == 0
    assert cos >= 0.99


def test_lstm_without_a_state_input_stays_float_with_a_message(tmp_path, caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="amct_pytorch"):
        config, records, cos = run_flow(tmp_path, WithLstm(), (5, 4))
    assert sorted(k for k, v in config.items() if isinstance(v, dict)) == ["fc"]
    assert list(records) == ["fc"]
    assert any("layer 'lstm' stays in float: its initial_h (input 5) does not come from a model input"
               in r.getMessage() for r in caplog.records)
    assert cos >= 0.99


def test_simple_config_file(tmp_path):
    from models import spec_net
    cfg = tmp_path / "simple.cfg"
    cfg.write_text('batch_num : 3\nskip_layers : "dw"\ncommon_config : {\n  hfmg_quantize : { num_of_bins : 1024 }\n}\n'
                   'override_layer_types : {\n  layer_type : "Linear"\n  calibration_config : {\n'
                   '    ifmr_quantize : { search_step : 0.02 asymmetric : false }\n  }\n}\n')
    config = tmp_path / "c.json"
    amct.create_quant_config(str(config), spec_net(), torch.randn(2, 3, 8, 8), config_defination=str(cfg))
    data = json.loads(config.read_text())
    assert data["batch_num"] == 3
    assert data["dw"]["quant_enable"] is False
    assert data["conv1"]["activation_quant_params"] == {"num_bits": 8, "act_algo": "hfmg", "asymmetric": True,
                                                        "num_of_bins": 1024}
    assert data["fc"]["activation_quant_params"]["search_step"] == 0.02
    assert data["fc"]["activation_quant_params"]["asymmetric"] is False


def test_hfmg_flow(tmp_path):
    from models import spec_net
    model = spec_net()
    x = [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x[0], batch_num=3)
    data = json.load(open(config))
    for value in data.values():
        if isinstance(value, dict):
            value["activation_quant_params"] = {"num_bits": 8, "act_algo": "hfmg", "asymmetric": True,
                                                "num_of_bins": 2048}
    json.dump(data, open(config, "w"))
    calib = amct.quantize_model(config, modified, record, model, x[0])
    with torch.no_grad():
        for batch in x:
            calib(batch)
    records = read_record(record)
    assert all(r.HasField("scale_d") for r in records.values())
    amct.save_model(modified, record, str(tmp_path / "o" / "m"))
