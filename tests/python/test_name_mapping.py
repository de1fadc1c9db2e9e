"""The exporter of torch 2.13 (dynamo-based) is mapped back to module names:
nested Sequential paths, a module called twice (not quantizable), functional
ops between modules, Linear on 3-D input (MatMul) and fresh BatchNorms."""

import json

import onnx
import torch

import amct_pytorch as amct
from models import MappingNet


def test_config_lists_supported_layers_by_module_name(tmp_path):
    torch.manual_seed(0)
    model = MappingNet().eval()
    config = tmp_path / "config.json"
    amct.create_quant_config(str(config), model, torch.randn(2, 3, 8, 8))
    layers = [k for k, v in json.loads(config.read_text()).items() if isinstance(v, dict)]
    # 'shared' runs twice in forward(), so AMCT does not quantize it.
    assert layers == ["features.0", "features.2.0", "head"]


def test_modified_model_names_nodes_after_modules(tmp_path):
    torch.manual_seed(0)
    model = MappingNet().eval()
    x = torch.randn(2, 3, 8, 8)
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x)
    calib = amct.quantize_model(config, modified, record, model, x)
    graph = onnx.load(modified).graph
    by_name = {n.name: n for n in graph.node}
    assert by_name["features.0"].op_type == "Conv"
    assert by_name["features.2.0"].op_type == "Conv"
    assert by_name["head"].op_type == "MatMul"
    # Fresh BatchNorms (identical constants) are fused like trained ones.
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    attrs = {a.name: a.s for a in by_name["features.0"].attribute}
    assert attrs["op_data_type"] == b"float"
    # The calibration model computes what the float model computes, up to
    # the weight quantization.
    with torch.no_grad():
        ref, got = model(x), calib(x)
    assert torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.999


def test_user_model_is_not_modified(tmp_path):
    torch.manual_seed(0)
    model = MappingNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x)
    amct.quantize_model(config, modified, record, model, x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert type(model.features[0]) is torch.nn.Conv2d
