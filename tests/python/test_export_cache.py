"""One export per flow: create_quant_config, quantize_preprocess and
quantize_model on the same model, inputs and export settings share one
export; any change of the model's structure, tensors, modes, the inputs'
shapes or the settings exports again; the cache keeps no model alive."""

import gc
import weakref

import pytest
import torch
from torch import nn

import amct_pytorch as amct
from amct_pytorch import export as amct_export
from models import spec_net


@pytest.fixture
def export_calls(monkeypatch):
    """Counts the exporter's runs."""
    calls = []
    original = torch.onnx.export

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", counting)
    return calls


def _flow(tmp_path, model, x, between=None, **settings):
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x, **settings)
    if between is not None:
        between()
    amct.quantize_model(config, modified, record, model, x, **settings)
    with open(modified, "rb") as f:
        return f.read()


def test_config_and_quantize_share_one_export(tmp_path, export_calls):
    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    shared = _flow(tmp_path / "a", model, x)
    assert len(export_calls) == 1
    # quantize_model released it: the next flow exports again, and a flow
    # that exports twice writes the same modified model.
    separate = _flow(tmp_path / "b", model, x, between=lambda: amct_export.release_export(model))
    assert len(export_calls) == 3
    assert shared == separate


def test_export_settings_given_to_both_steps_share_one_export(tmp_path, export_calls):
    settings = dict(input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    _flow(tmp_path, spec_net(), torch.randn(2, 3, 8, 8), **settings)
    assert len(export_calls) == 1


def _replace_head(model, _x):
    model.fc = nn.Linear(model.fc.in_features, model.fc.out_features)


def _new_weight_object(model, _x):
    model.conv1.weight = nn.Parameter(model.conv1.weight.detach().clone())


def _in_place_write(model, _x):
    with torch.no_grad():
        model.conv1.bias.add_(1.0)


def _train_mode(model, _x):
    model.bn.train()


def _attribute(model, _x):
    model.bn.eps = 1e-3


def _forward_hook(model, _x):
    model.conv1.register_forward_hook(lambda _m, _i, out: out * 2)


CHANGES = {"module replaced": _replace_head, "parameter replaced": _new_weight_object,
           "in-place write": _in_place_write, "training flag": _train_mode, "module attribute": _attribute,
           "forward hook": _forward_hook}


@pytest.mark.parametrize("change", CHANGES)
def test_changed_model_is_exported_again(tmp_path, export_calls, change):
    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    written = _flow(tmp_path / "a", model, x, between=lambda: CHANGES[change](model, x))
    assert len(export_calls) == 2
    assert amct_export._CACHE.get(model) is None
    # The result is that of a flow on the changed model that exports twice.
    assert written == _flow(tmp_path / "b", model, x, between=lambda: amct_export.release_export(model))


def test_other_inputs_or_settings_export_again(tmp_path, export_calls):
    model = spec_net()
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, torch.randn(2, 3, 8, 8))
    amct.quantize_model(config, modified, record, model, torch.randn(3, 3, 8, 8))
    assert len(export_calls) == 2
    amct.create_quant_config(config, model, torch.randn(2, 3, 8, 8))
    amct.quantize_model(config, modified, record, model, torch.randn(2, 3, 8, 8), input_names=["image"])
    assert len(export_calls) == 4
    amct.create_quant_config(config, model, torch.randn(2, 3, 8, 8))
    amct.quantize_model(config, modified, record, model, torch.randn(2, 3, 8, 8).double().float())
    assert len(export_calls) == 5  # same shape and dtype, other values: shared


def test_weight_values_are_read_when_the_export_is_used(tmp_path, export_calls):
    """A write through .data bypasses the version counter, but the cached
    export's initializers are the model's tensors themselves: the modified
    model carries the new values."""
    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    written = _flow(tmp_path / "a", model, x, between=lambda: model.conv1.weight.data.mul_(2.0))
    assert len(export_calls) == 1
    assert written == _flow(tmp_path / "b", model, x, between=lambda: amct_export.release_export(model))


def test_cache_keeps_no_copy_of_the_weights_and_no_model(tmp_path, export_calls):
    model = spec_net()
    amct.create_quant_config(str(tmp_path / "c.json"), model, torch.randn(2, 3, 8, 8))
    _fingerprint, program = amct_export._CACHE[model]
    storages = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    initializers = [v.const_value.raw for v in program.model.graph.initializers.values()]
    assert initializers and all(isinstance(t, torch.Tensor) and t.data_ptr() in storages for t in initializers)
    alive = weakref.ref(model)
    del model, program, initializers, _fingerprint
    gc.collect()
    assert alive() is None
    assert len(amct_export._CACHE) == 0


def test_large_model_path_reuses_the_export(tmp_path, export_calls, monkeypatch):
    """Weights handed over in an external data file: the cached program is
    saved once per use and stays usable (saving does not change it)."""
    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    in_memory = _flow(tmp_path / "a", model, x)
    monkeypatch.setattr(amct_export, "EXTERNAL_EXPORT_BYTES", 0)
    through_file = _flow(tmp_path / "b", model, x)
    assert len(export_calls) == 2
    assert through_file == in_memory


def test_dmq_flow_shares_one_export_across_three_steps(tmp_path, export_calls):
    """quantize_preprocess reads no export settings, so it uses the export
    create_quant_config made with quantize_model's settings."""
    import json

    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    settings = dict(input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x, **settings)
    with open(config) as f:
        cfg = json.load(f)
    cfg["conv1"]["dmq_balancer_param"] = 0.5
    with open(config, "w") as f:
        json.dump(cfg, f)
    balancer = amct.quantize_preprocess(config, record, model, x)
    with torch.no_grad():
        balancer(x)
    amct.quantize_model(config, modified, record, model, x, **settings)
    assert len(export_calls) == 1
    assert amct_export._CACHE.get(model) is None


def test_failed_quantize_model_keeps_the_export(tmp_path, export_calls):
    model = spec_net()
    x = torch.randn(2, 3, 8, 8)
    config, modified, record = (str(tmp_path / n) for n in ("c.json", "m.onnx", "r.txt"))
    amct.create_quant_config(config, model, x)
    with pytest.raises(amct.AmctFileNotFoundError, match="missing.json' does not exist"):
        amct.quantize_model(str(tmp_path / "missing.json"), modified, record, model, x)
    amct.quantize_model(config, modified, record, model, x)
    assert len(export_calls) == 1


def test_auto_calibration_trials_share_the_flows_export(tmp_path, export_calls, monkeypatch):
    """create_quant_config, the global calibration and both trials: one export."""
    from test_auto_calibration import Run, read_history

    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1e-3)
    run()
    history = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert len(history) == 3  # the global calibration and two trials
    assert len(export_calls) == 1
    assert amct_export._CACHE.get(run.model) is None
