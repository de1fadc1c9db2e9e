"""The example of AMCT's quantize_model document, run as written (with a
small CNN for build_model), then calibration and save_model."""

import os

import torch
from torch import nn

import amct_pytorch as amct


def build_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10))


def test_seed_document_example(tmp_path):
    TMP = str(tmp_path)
    state_dict_path = os.path.join(TMP, "model.pth")
    torch.save(build_model().state_dict(), state_dict_path)
    input_shape = (4, 3, 16, 16)
    config_json_file = os.path.join(TMP, "config.json")

    # --- the document's example, verbatim ---
    model = build_model()
    model.load_state_dict(torch.load(state_dict_path))
    input_data = tuple([torch.randn(input_shape)])

    scale_offset_record_file = os.path.join(TMP, 'scale_offset_record.txt')
    modfied_model = os.path.join(TMP, 'modfied_model.onnx')
    model.eval()
    amct.create_quant_config(config_json_file, model, input_data)
    calibration_model = amct.quantize_model(config_json_file,
                                            modfied_model,
                                            scale_offset_record_file,
                                            model,
                                            input_data,
                                            input_names=['input'],
                                            output_names=['output'],
                                            dynamic_axes={'input': {0: 'batch_size'},
                                                          'output': {0: 'batch_size'}})
    # --- end of the example ---
    assert isinstance(calibration_model, nn.Module)
    with open(scale_offset_record_file) as f:
        before = f.read()
    assert "scale_w" in before and "scale_d" not in before
    with torch.no_grad():
        calibration_model(*input_data)
    with open(scale_offset_record_file) as f:
        after = f.read()
    assert after.count("scale_d:") == 4  # two convs, the pool and the linear layer
    save_path = os.path.join(TMP, "results", "model")
    amct.save_model(modfied_model, scale_offset_record_file, save_path)
    assert os.path.exists(save_path + "_deploy_model.onnx")
    assert os.path.exists(save_path + "_fake_quant_model.onnx")
