"""accuracy_based_auto_calibration: a model with one layer that INT8 destroys
(its input carries a huge constant outlier) is ranked, rolled back first and
reaches the evaluator's target; the files of docs/amct-reference.md#accuracy_based_auto_calibration are
checked against independent references; bad arguments and failed calls."""

import hashlib
import json
import logging
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import amct_pytorch as amct
from amct_pytorch.common.auto_calibration import AutoCalibrationEvaluatorBase
from record_proto import read_record

OUTLIER = 1e4


class FragileNet(nn.Module):
    """fc1 -> fragile -> head. fragile's input gets a constant column of 1e4
    that its weights ignore: the INT8 range spans the outlier, so every real
    value rounds to the zero point, while the float layer is unaffected."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(16, 16)
        self.fragile = nn.Linear(17, 16)
        self.head = nn.Linear(16, 4)
        with torch.no_grad():
            self.fragile.weight[:, 16] = 0.0

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.cat([h, torch.full_like(h[:, :1], OUTLIER)], dim=1)
        return self.head(torch.relu(self.fragile(h)))


LAYERS = ["fc1", "fragile", "head"]
GEN = torch.Generator().manual_seed(3)
CALIB_BATCHES = [torch.randn(64, 16, generator=GEN) for _ in range(2)]
EVAL_INPUT = torch.randn(64, 16, generator=GEN)


class CosineEvaluator(AutoCalibrationEvaluatorBase):
    """Metric: cosine similarity of the model's output with the float model's
    on fixed data; satisfied while 1 - metric stays below max_loss."""

    def __init__(self, model, max_loss, calibration_batches=None, fail_on_evaluate=None, eval_input=EVAL_INPUT):
        super().__init__()
        self.eval_input = eval_input
        with torch.no_grad():
            self.reference = model(eval_input)
        self.max_loss = max_loss
        self.calibration_batches = CALIB_BATCHES if calibration_batches is None else calibration_batches
        self.fail_on_evaluate = fail_on_evaluate
        self.evaluations = 0

    def calibration(self, model):
        with torch.no_grad():
            for batch in self.calibration_batches:
                model(batch)

    def evaluate(self, model):
        self.evaluations += 1
        if self.evaluations == self.fail_on_evaluate:
            raise KeyboardInterrupt("evaluation stopped")
        with torch.no_grad():
            out = model(self.eval_input)
        return float(F.cosine_similarity(out.flatten(), self.reference.flatten(), dim=0))

    def metric_eval(self, original_metric, new_metric):
        loss = original_metric - new_metric
        return loss < self.max_loss, loss


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_history(path):
    """AMCT writes the records as JSON objects one after another."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder, records, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        record, pos = decoder.raw_decode(text, pos)
        records.append(record)
    return records


def amct_json(value):
    """AMCT's writer: json.dumps(indent=4, separators=(',', ':'), ensure_ascii=False)."""
    return json.dumps(value, indent=4, separators=(",", ":"), ensure_ascii=False)


class Run:
    def __init__(self, tmp_path, max_loss, model=None, **kwargs):
        self.model = model or FragileNet()
        self.dir = tmp_path / "out"
        self.config = str(tmp_path / "config.json")
        self.record = str(tmp_path / "record.txt")
        self.save_dir = str(self.dir / "fragile")
        amct.create_quant_config(self.config, self.model, CALIB_BATCHES[0], batch_num=2)
        self.config_digest = digest(self.config)
        self.evaluator = CosineEvaluator(self.model, max_loss, **kwargs)

    def __call__(self, **kwargs):
        amct.accuracy_based_auto_calibration(self.model, self.evaluator, self.config, self.record, self.save_dir,
                                             CALIB_BATCHES[0], **kwargs)

    def file(self, name):
        return str(self.dir / name)


def expected_similarities(tmp_path, model):
    """Each layer's sensitivity computed independently: the plain flow's
    record, the calibration inputs from fake-quantized weights, the fake-quant
    layer in NumPy float64 against the float layer."""
    config, record_file = str(tmp_path / "ref_config.json"), str(tmp_path / "ref_record.txt")
    amct.create_quant_config(config, model, CALIB_BATCHES[0], batch_num=2)
    calib = amct.quantize_model(config, str(tmp_path / "ref.onnx"), record_file, model, CALIB_BATCHES[0])
    with torch.no_grad():
        for batch in CALIB_BATCHES:
            calib(batch)
    record = read_record(record_file)

    def fq_weight(layer):
        w = getattr(model, layer).weight.detach().double().numpy()
        s = np.asarray(record[layer].scale_w, dtype=np.float32).astype(np.float64).reshape(-1, 1)
        return np.clip(np.round(w / s), -128, 127) * s

    def fq_layer(layer, x):
        entry = record[layer]
        inv = np.float32(1.0 / np.float64(np.float32(entry.scale_d)))
        q = np.clip(np.round(x.astype(np.float32) * inv) + entry.offset_d, -128, 127) - entry.offset_d
        deq = (np.asarray(entry.scale_w, dtype=np.float32) * np.float32(entry.scale_d)).astype(np.float64)
        bias = np.round(getattr(model, layer).bias.detach().double().numpy() / deq) * deq
        return (q * np.float64(np.float32(entry.scale_d))) @ fq_weight(layer).T + bias

    def float_layer(layer, x):
        m = getattr(model, layer)
        return x @ m.weight.detach().double().numpy().T + m.bias.detach().double().numpy()

    def score(a, b):
        return 0.5 + 0.5 * float(a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))

    sums = dict.fromkeys(LAYERS, 0.0)
    for batch in CALIB_BATCHES:
        x = batch.double().numpy()
        inputs = {"fc1": x}
        # The calibration model: fake-quantized weights, float activations.
        h = np.maximum(x @ fq_weight("fc1").T + model.fc1.bias.detach().double().numpy(), 0)
        inputs["fragile"] = np.concatenate([h, np.full((h.shape[0], 1), OUTLIER)], axis=1)
        inputs["head"] = np.maximum(inputs["fragile"] @ fq_weight("fragile").T +
                                    model.fragile.bias.detach().double().numpy(), 0)
        for layer in LAYERS:
            sums[layer] += score(float_layer(layer, inputs[layer]), fq_layer(layer, inputs[layer]))
    return {layer: total / len(CALIB_BATCHES) for layer, total in sums.items()}


def test_fragile_layer_is_ranked_first_rolled_back_first_and_the_target_is_reached(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1e-3)
    with open(run.config, encoding="utf-8") as f:
        user_config = json.load(f)
    with caplog.at_level(logging.INFO, logger="amct_pytorch"):
        run()
    # The user's config is only read.
    assert digest(run.config) == run.config_digest

    # Ranking: AMCT's JSON, ascending, matching the independent computation.
    with open(run.file("accuracy_based_auto_calibration_ranking_information.json"), encoding="utf-8") as f:
        ranking_text = f.read()
    ranking = json.loads(ranking_text)
    assert ranking_text == amct_json(ranking)
    assert [layer for layer, _ in ranking][0] == "fragile"
    expected = expected_similarities(tmp_path, run.model)
    assert sorted(expected, key=expected.get) == [layer for layer, _ in ranking]
    for layer, similarity in ranking:
        assert similarity == pytest.approx(expected[layer], abs=1e-6), layer
    assert expected["fragile"] < 0.9 < 0.999 < min(expected["fc1"], expected["head"])

    # History: the global calibration, then the trials; fragile is rolled back in every trial.
    history = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert history[0]["roll_back_config"] == dict.fromkeys(LAYERS, True)
    assert list(history[0]["roll_back_config"]) == LAYERS
    assert history[0]["metric_eval"][0] is False
    trials = history[1:]
    assert [sum(not q for q in t["roll_back_config"].values()) for t in trials] == [2, 1]
    assert all(t["roll_back_config"]["fragile"] is False for t in trials)
    assert all(t["metric_eval"][0] is True for t in trials)
    final = trials[-1]["roll_back_config"]
    assert final == {"fragile": False, "fc1": True, "head": True}

    # One config per trial beside the outputs, and the final config: the user's file with quant_enable set.
    for number, trial in enumerate(trials, start=1):
        with open(run.file(f"accuracy_based_auto_calibration_trial{number}_config.json"), encoding="utf-8") as f:
            trial_config = json.load(f)
        assert {layer: trial_config[layer]["quant_enable"] for layer in LAYERS} == trial["roll_back_config"]
    expected_final = json.loads(json.dumps(user_config))
    expected_final["fragile"]["quant_enable"] = False
    with open(run.file("accuracy_based_auto_calibration_final_config.json"), encoding="utf-8") as f:
        assert f.read() == amct_json(expected_final)

    with open(run.file("accuracy_based_auto_calibration_ranking_information.txt"), encoding="utf-8") as f:
        table = f.read().splitlines()
    assert table[3].split() == ["rank", "layer", "similarity", "final"]
    assert table[4].split()[:2] == ["1", "fragile"] and table[4].endswith("rolled back")
    assert all(line.endswith("quantized") for line in table[5:])

    # The record and the models are the final configuration's.
    assert list(read_record(run.record)) == ["fc1", "head"]
    assert sorted(amct._amct.fake_quant_layers(run.save_dir + "_fake_quant_model.onnx")) == ["fc1", "head"]
    session = ort.InferenceSession(run.save_dir + "_fake_quant_model.onnx", providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: EVAL_INPUT.numpy()})[0]
    # The torch fake-quant model the evaluator saw computes what the fake-quant ONNX model does.
    torch_fq_metric = 1.0 - trials[-1]["metric_eval"][1]
    with torch.no_grad():
        ort_metric = float(F.cosine_similarity(torch.from_numpy(out).flatten(),
                                               run.evaluator.reference.flatten(), dim=0))
    assert ort_metric > 1 - 1e-3
    # The quantization loss (about 4e-5) agrees within 5%.
    assert ort_metric == pytest.approx(torch_fq_metric, abs=2e-6)
    assert os.path.exists(run.save_dir + "_deploy_model.onnx")
    assert not [name for name in os.listdir(run.dir) if name.startswith("temp")]

    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("auto calibration trial 1 of at most 3: rolling back 2 of 3 layers (fragile, ")
               for m in messages)
    assert any(m.startswith("auto calibration trial 2: metric ") and m.endswith("satisfied") for m in messages)


def test_global_calibration_that_satisfies_needs_no_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1.0)
    run()
    history = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert len(history) == 1 and history[0]["metric_eval"][0] is True
    with open(run.config, encoding="utf-8") as f:
        user_config = json.load(f)
    with open(run.file("accuracy_based_auto_calibration_final_config.json"), encoding="utf-8") as f:
        assert json.load(f) == user_config
    assert not os.path.exists(run.file("accuracy_based_auto_calibration_trial1_config.json"))
    assert list(read_record(run.record)) == LAYERS


def test_no_configuration_satisfies_so_no_model_is_left(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1e-12)
    run.dir.mkdir()
    stale = run.save_dir + "_deploy_model.onnx"
    with open(stale, "wb") as f:
        f.write(b"an earlier model")
    run()
    assert not os.path.exists(stale)
    assert not os.path.exists(run.file("accuracy_based_auto_calibration_final_config.json"))
    history = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert history[-1]["roll_back_config"] == dict.fromkeys(LAYERS, False)
    assert list(history[-1]["roll_back_config"])[0] == "fragile"  # ranking order
    assert history[-1]["metric_eval"] == [True, 0.0]
    assert os.path.exists(run.file("accuracy_based_auto_calibration_ranking_information.json"))


def test_a_failed_call_leaves_earlier_outputs_intact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1e-3)
    run()
    outputs = [run.record, run.save_dir + "_deploy_model.onnx", run.save_dir + "_fake_quant_model.onnx",
               run.file("accuracy_based_auto_calibration_final_config.json"),
               run.file("accuracy_based_auto_calibration_ranking_information.json")]
    before = {path: digest(path) for path in outputs}
    # The third evaluation is the first trial's.
    run.evaluator = CosineEvaluator(run.model, 1e-3, fail_on_evaluate=3)
    with pytest.raises(KeyboardInterrupt, match="evaluation stopped"):
        run()
    assert {path: digest(path) for path in outputs} == before
    assert digest(run.config) == run.config_digest
    assert not [name for name in os.listdir(run.dir) if name.startswith("temp")]


def test_too_few_calibration_batches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run(tmp_path, max_loss=1e-3, calibration_batches=CALIB_BATCHES[:1])
    with pytest.raises(RuntimeError, match=r"model_evaluator.calibration\(\) ran the calibration model on 1 "
                                           r"batches; the config's batch_num is 2"):
        run()


class Unsatisfiable(CosineEvaluator):
    def metric_eval(self, original_metric, new_metric):
        return False, 0.0


class NotAPair(CosineEvaluator):
    def metric_eval(self, original_metric, new_metric):
        return True


@pytest.mark.parametrize("kwargs, error, message", [
    ({"strategy": "Greedy"}, amct.AmctValueError,
     "accuracy_based_auto_calibration(): strategy must be 'BinarySearch' (the strategy amct implements), "
     "got 'Greedy'"),
    ({"sensitivity": "Mse"}, amct.AmctValueError,
     "accuracy_based_auto_calibration(): sensitivity must be 'CosineSimilarity' (the measure amct implements), "
     "got 'Mse'"),
    ({"input_names": "input"}, amct.AmctTypeError,
     "accuracy_based_auto_calibration(): argument input_names must be list, got str"),
    ({"dynamic_axes": {"input": [-1]}}, amct.AmctValueError, "dynamic_axes['input']: axis -1 cannot be negative"),
])
def test_argument_errors(tmp_path, kwargs, error, message):
    run = Run(tmp_path, max_loss=1e-3)
    with pytest.raises(error) as info:
        run(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, RuntimeError)  # what AMCT raises
    assert not run.dir.exists()


def test_evaluator_and_file_errors(tmp_path):
    model = FragileNet()
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, model, CALIB_BATCHES[0])
    evaluator = CosineEvaluator(model, 1e-3)
    call = amct.accuracy_based_auto_calibration
    with pytest.raises(amct.AmctTypeError) as info:
        call(model, object(), config, str(tmp_path / "r.txt"), str(tmp_path / "m"), CALIB_BATCHES[0])
    assert str(info.value) == ("accuracy_based_auto_calibration(): model_evaluator must be an instance of a "
                               "subclass of AutoCalibrationEvaluatorBase (amct_pytorch.common.auto_calibration), "
                               "got object")
    missing = str(tmp_path / "absent.json")
    with pytest.raises(amct.AmctValueError) as info:
        call(model, evaluator, missing, str(tmp_path / "r.txt"), str(tmp_path / "m"), CALIB_BATCHES[0])
    assert str(info.value) == f"accuracy_based_auto_calibration(): config_file: Can not find the config_file at " \
                              f"'{missing}'"
    with pytest.raises(ValueError, match="record_file"):
        call(model, evaluator, config, str(tmp_path) + "/", str(tmp_path / "m"), CALIB_BATCHES[0])
    with pytest.raises(amct.AmctTypeError, match="argument model must be Module"):
        call("model", evaluator, config, str(tmp_path / "r.txt"), str(tmp_path / "m"), CALIB_BATCHES[0])


def test_metric_eval_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = FragileNet()
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, model, CALIB_BATCHES[0])
    args = (config, str(tmp_path / "r.txt"), str(tmp_path / "out" / "m"), CALIB_BATCHES[0])
    with pytest.raises(amct.AmctValueError, match=r"^Compare between original_accuracy and original_accuracy can "
                                                  r"not satisfy the acc requirement, please check the metric_eval"):
        amct.accuracy_based_auto_calibration(model, Unsatisfiable(model, 0.0), *args)
    with pytest.raises(amct.AmctTypeError) as info:
        amct.accuracy_based_auto_calibration(model, NotAPair(model, 0.0), *args)
    assert str(info.value) == "model_evaluator.metric_eval() must return (satisfied, loss), got True"
    assert not os.path.exists(tmp_path / "out" / "m_deploy_model.onnx")


class TwoInputs(nn.Module):
    """Records the batches it is run on."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.seen = []

    def forward(self, x, ids):
        self.seen.append((x.clone(), ids.clone()))
        return self.fc(x) + ids.float().sum()


def write_batches(tmp_path):
    rng = np.random.default_rng(0)
    x_dir, ids_dir = tmp_path / "x", tmp_path / "ids"
    x_dir.mkdir()
    ids_dir.mkdir()
    batches = []
    for i in range(3):
        x = rng.standard_normal((2, 3)).astype(np.float32)
        ids = rng.integers(0, 9, (2, 4)).astype(np.int64)
        x.tofile(x_dir / f"batch{i}.bin")
        ids.tofile(ids_dir / f"batch{i}.bin")
        batches.append((x, ids))
    return f"{x_dir};{ids_dir}", batches


def test_model_evaluator_feeds_the_binary_batches_in_file_order(tmp_path):
    data_dir, batches = write_batches(tmp_path)
    evaluator = amct.ModelEvaluator(data_dir, "x:2,3;ids:2,4", "float32;int64")
    model = TwoInputs()
    evaluator.calibration(model, 2)
    assert len(model.seen) == 2
    for (x, ids), (ex, eids) in zip(model.seen, batches):
        np.testing.assert_array_equal(x.numpy(), ex)
        np.testing.assert_array_equal(ids.numpy(), eids)
        assert x.dtype == torch.float32 and ids.dtype == torch.int64
    model.seen.clear()
    assert evaluator.evaluate(model) is None
    assert len(model.seen) == 3
    with pytest.raises(RuntimeError, match="Total batches found: 3, but trying to load: 4"):
        evaluator.calibration(model, 4)
    with pytest.raises(amct.AmctValueError, match=r"ModelEvaluator.calibration\(\): Invalid batch_num 0"):
        evaluator.calibration(model, 0)
    with pytest.raises(amct.AmctTypeError, match="argument data_types must be str, got list"):
        amct.ModelEvaluator(data_dir, "x:2,3;ids:2,4", ["float32", "int64"])
    with pytest.raises(TypeError, match=r"data_types: Unsupported data type\[float8\]!"):
        amct.ModelEvaluator(data_dir, "x:2,3;ids:2,4", "float8;int64")


class BinaryBatchEvaluator(amct.ModelEvaluator):
    """AMCT's documented pattern: ModelEvaluator's calibration from binary
    files, with a metric and its acceptance added."""

    def __init__(self, data_dir, model):
        super().__init__(data_dir, "x:64,16", "float32")
        self.cosine = CosineEvaluator(model, 1e-3)

    def evaluate(self, model, iterations=None):
        return self.cosine.evaluate(model)

    def metric_eval(self, original_metric, new_metric):
        return self.cosine.metric_eval(original_metric, new_metric)


def test_model_evaluator_subclass_drives_auto_calibration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    for i, batch in enumerate(CALIB_BATCHES):
        batch.numpy().tofile(tmp_path / "x" / f"{i}.bin")
    run = Run(tmp_path, max_loss=1e-3)
    run.evaluator = BinaryBatchEvaluator(str(tmp_path / "x"), run.model)
    run()
    with open(run.file("accuracy_based_auto_calibration_final_config.json"), encoding="utf-8") as f:
        final = json.load(f)
    assert {layer: final[layer]["quant_enable"] for layer in LAYERS} == {"fc1": True, "fragile": False, "head": True}


class DeconvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        return self.deconv(torch.relu(self.conv(x)))


def test_the_evaluated_model_quantizes_deconvolution_weights_as_the_fake_quant_onnx_model(tmp_path, monkeypatch):
    """AMCT calibrates on float ConvTranspose weights; the model the evaluator
    sees must still compute what the fake-quant ONNX model computes."""
    monkeypatch.chdir(tmp_path)
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(4, 3, 8, 8, generator=gen) for _ in range(2)]
    eval_input = torch.randn(4, 3, 8, 8, generator=gen)
    model = DeconvNet()
    config, save_dir = str(tmp_path / "config.json"), str(tmp_path / "out" / "deconv")
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    evaluator = CosineEvaluator(model, 1.0, calibration_batches=batches, eval_input=eval_input)
    amct.accuracy_based_auto_calibration(model, evaluator, config, str(tmp_path / "record.txt"), save_dir,
                                         batches[0])
    (global_record,) = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert global_record["roll_back_config"] == {"conv": True, "deconv": True}
    session = ort.InferenceSession(save_dir + "_fake_quant_model.onnx", providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: eval_input.numpy()})[0]
    ort_loss = 1.0 - float(F.cosine_similarity(torch.from_numpy(out).flatten(), evaluator.reference.flatten(), dim=0))
    assert global_record["metric_eval"][1] == pytest.approx(ort_loss, rel=0.02, abs=1e-7)


def test_evaluator_base_names_the_method_a_subclass_must_implement():
    # The base class is AMCT's protocol: ModelEvaluator implements calibration
    # and evaluate but not metric_eval, so the methods cannot be abstract.
    class OnlyEvaluate(AutoCalibrationEvaluatorBase):
        def evaluate(self, model):
            return 1.0

    evaluator = OnlyEvaluate()
    assert evaluator.evaluate(None) == 1.0
    with pytest.raises(NotImplementedError, match=r"AutoCalibrationEvaluatorBase\.calibration\(model\) must be"):
        evaluator.calibration(None)
    with pytest.raises(NotImplementedError, match=r"metric_eval\(original_metric, new_metric\) must be implemented"):
        evaluator.metric_eval(1.0, 0.9)


class RecurrentNet(nn.Module):
    """A Linear, then a GRU whose initial state is the model's second input."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.rnn = nn.GRU(8, 8)

    def forward(self, x, h0):
        out, _ = self.rnn(self.fc(x), h0)
        return out


class RecurrentEvaluator(AutoCalibrationEvaluatorBase):
    def __init__(self, inputs):
        super().__init__()
        self.inputs = inputs

    def calibration(self, model):
        with torch.no_grad():
            for _ in range(2):
                model(*self.inputs)

    def evaluate(self, model):
        with torch.no_grad():
            return float(model(*self.inputs).abs().mean())

    def metric_eval(self, original_metric, new_metric):
        return True, original_metric - new_metric


def test_recurrent_layers_are_refused_with_the_layer_named(tmp_path):
    torch.manual_seed(0)
    model = RecurrentNet().eval()
    inputs = (torch.randn(5, 3, 16), torch.randn(1, 3, 8))
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, model, inputs, batch_num=2)
    with pytest.raises(amct.AmctValueError, match=r"layer 'rnn' is an LSTM/GRU, which auto calibration does not "
                                                  r"support; set its quant_enable to false in config file"):
        amct.accuracy_based_auto_calibration(model, RecurrentEvaluator(inputs), config, str(tmp_path / "record.txt"),
                                             str(tmp_path / "out" / "net"), inputs)
    out = tmp_path / "out"
    left = [path.name for path in out.rglob("*")] if out.exists() else []
    assert not [name for name in left if name.endswith(".onnx") or name.startswith("temp")]


class FunctionalFc(nn.Module):
    """fc runs as F.linear(x, self.fc.weight, self.fc.bias): its module is never called."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(F.linear(x, self.fc.weight, self.fc.bias)))


def test_layers_used_only_through_their_weight_are_refused_with_the_layer_named(tmp_path):
    model = FunctionalFc().eval()
    config = str(tmp_path / "config.json")
    amct.create_quant_config(config, model, CALIB_BATCHES[0], batch_num=2)
    with pytest.raises(amct.AmctValueError, match=r"layer 'fc' is used only through its weight \(as in "
                                                  r"F.linear\(x, module.weight\), or MultiheadAttention's out_proj\), "
                                                  r"which auto calibration does not support; set its quant_enable "
                                                  r"to false in config file"):
        amct.accuracy_based_auto_calibration(model, CosineEvaluator(model, 1e-3), config, str(tmp_path / "record.txt"),
                                             str(tmp_path / "out" / "net"), CALIB_BATCHES[0])
    out = tmp_path / "out"
    left = [path.name for path in out.rglob("*")] if out.exists() else []
    assert not [name for name in left if name.endswith(".onnx") or name.startswith("temp")]


class PadConv(nn.Conv2d):
    """EfficientNet-Lite's Conv2dStaticSamePadding in small: pads in its
    forward, so calibration observes it at its weight's op."""

    def forward(self, x):
        return super().forward(F.pad(x, (1, 1, 1, 1)))


class FragileConvNet(nn.Module):
    """c1 -> BN -> fragile -> BN -> head, fragile's input carrying FragileNet's
    outlier channel. Both convs have their BatchNorm fused, quantized or not."""

    def __init__(self, subclass):
        super().__init__()
        torch.manual_seed(2)
        conv = (lambda cin, cout: PadConv(cin, cout, 3)) if subclass else (
            lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1))
        self.c1, self.b1 = conv(3, 8), nn.BatchNorm2d(8)
        self.fragile, self.b2 = conv(9, 8), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)
        generator = torch.Generator().manual_seed(4)
        with torch.no_grad():
            self.fragile.weight[:, 8] = 0.0
            for bn in (self.b1, self.b2):  # statistics far from the identity, so dropping a BN shows
                bn.running_mean.copy_(torch.randn(8, generator=generator))
                bn.running_var.copy_(torch.rand(8, generator=generator) * 4 + 0.1)
                bn.weight.copy_(torch.rand(8, generator=generator) * 2 + 0.5)
                bn.bias.copy_(torch.randn(8, generator=generator))
        self.eval()

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.cat([h, torch.full_like(h[:, :1], OUTLIER)], dim=1)
        return self.head(torch.relu(self.b2(self.fragile(h))).mean((2, 3)))


class OutputRecorder(CosineEvaluator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outputs = []

    def evaluate(self, model):
        with torch.no_grad():
            self.outputs.append(model(self.eval_input).numpy())
        return super().evaluate(model)


@pytest.mark.parametrize("subclass", [False, True], ids=["conv2d", "subclass"])
def test_a_rolled_back_conv_keeps_its_fused_batchnorm_in_the_evaluated_model(tmp_path, monkeypatch, subclass):
    """AMCT fuses BatchNorms into quantized and float convs alike: a trial
    that rolls back a conv must evaluate it with its BatchNorm folded in."""
    monkeypatch.chdir(tmp_path)
    gen = torch.Generator().manual_seed(6)
    batches = [torch.randn(8, 3, 6, 6, generator=gen) for _ in range(2)]
    eval_input = torch.randn(8, 3, 6, 6, generator=gen)
    model = FragileConvNet(subclass)
    config, save_dir = str(tmp_path / "config.json"), str(tmp_path / "out" / "net")
    amct.create_quant_config(config, model, batches[0], batch_num=2)
    evaluator = OutputRecorder(model, 1e-3, calibration_batches=batches, eval_input=eval_input)
    amct.accuracy_based_auto_calibration(model, evaluator, config, str(tmp_path / "record.txt"), save_dir,
                                         batches[0])
    history = read_history(str(tmp_path / "amct_log" / "accuracy_based_auto_calibration_record.json"))
    assert history[0]["metric_eval"][0] is False
    assert history[-1]["roll_back_config"] == {"c1": True, "fragile": False, "head": True}
    # The evaluations: the float model, the global calibration, then one per trial.
    assert len(evaluator.outputs) == len(history) + 1
    reference = evaluator.reference.numpy()
    for trial, outputs in zip(history[1:], evaluator.outputs[2:]):
        assert not trial["roll_back_config"]["fragile"]
        cosine = float(outputs.ravel() @ reference.ravel() / (np.linalg.norm(outputs) * np.linalg.norm(reference)))
        assert cosine > 0.999, (trial["roll_back_config"], cosine)
    # The last trial's model computes what the fake-quant ONNX model (BN fused in the graph) does.
    session = ort.InferenceSession(save_dir + "_fake_quant_model.onnx", providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: eval_input.numpy()})[0]
    np.testing.assert_allclose(evaluator.outputs[-1], onnx_out, atol=1e-4 * np.ptp(onnx_out))


def test_a_float_conv_calibrates_downstream_layers_with_its_batchnorm_fused(tmp_path):
    """quantize_model with a conv+BN pair left float: the next layer's input,
    and so its record, is the one the BN-fused conv gives (fused by hand with
    torch here)."""
    gen = torch.Generator().manual_seed(7)
    batches = [torch.randn(8, 3, 6, 6, generator=gen) for _ in range(2)]

    def record_of(model, name):
        config, record = str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.txt")
        amct.create_quant_config(config, model, batches[0], batch_num=2)
        with open(config, encoding="utf-8") as f:
            content = json.load(f)
        content["c1"]["quant_enable"] = False
        with open(config, "w", encoding="utf-8") as f:
            json.dump(content, f)
        calibration_model = amct.quantize_model(config, str(tmp_path / f"{name}.onnx"), record, model, batches[0])
        with torch.no_grad():
            for batch in batches:
                calibration_model(batch)
        return read_record(record)

    model = FragileConvNet(subclass=True)
    fused = FragileConvNet(subclass=True)
    fused.c1 = torch.nn.utils.fusion.fuse_conv_bn_eval(model.c1, model.b1)
    fused.b1 = nn.Identity()
    records = record_of(model, "model")
    expected = record_of(fused, "fused")
    assert list(records) == ["fragile", "head"]
    for layer in ("fragile", "head"):
        assert records[layer].scale_d == pytest.approx(expected[layer].scale_d, rel=1e-6), layer
        assert records[layer].offset_d == expected[layer].offset_d, layer
