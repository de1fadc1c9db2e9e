"""The flow across calls, runs, threads and processes (issue 10): a record of
another quantize_model run is refused (item 12), a record write that failed
is retried (item 15), two flows in two threads both succeed (item 19), and
concurrent `amct save-model` runs on one prefix leave one run's set (item 20).
Item 14 (all-or-nothing outputs) is tests/cpp/export/save_model_flow_test.cc;
item 8 (Linear on N-D input) is test_atc_opset.py::
test_matmul_bias_is_float_and_qdq_computes_the_fake_quant_numbers."""

import os
import shutil
import subprocess
import threading

import onnx
import pytest
import torch

import amct_pytorch as amct
from record_proto import read_record
from models import spec_net, tiny_resnet

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
OUTPUTS = ("deploy", "fake_quant", "qdq")


def run_flow(root, model, x=X, batch_num=1, save=True, input_names=None):
    """create_quant_config + quantize_model + calibration (+ save_model) in `root`."""
    os.makedirs(root, exist_ok=True)
    paths = {n: os.path.join(root, n) for n in ("config.json", "modified.onnx", "record.txt")}
    amct.create_quant_config(paths["config.json"], model, x, batch_num=batch_num)
    calib = amct.quantize_model(paths["config.json"], paths["modified.onnx"], paths["record.txt"], model, x,
                                input_names=input_names)
    with torch.no_grad():
        for _ in range(batch_num):
            calib(x)
    paths["save"] = os.path.join(root, "out", "m")
    if save:
        amct.save_model(paths["modified.onnx"], paths["record.txt"], paths["save"])
    return paths


def fingerprint(onnx_file):
    props = {p.key: p.value for p in onnx.load(onnx_file).metadata_props}
    return props.get("amct.weights_fingerprint")


# ---- item 12: modified ONNX and record of two runs ----

def test_record_of_another_run_is_refused(tmp_path):
    a = run_flow(str(tmp_path / "a"), spec_net(0), save=False)
    b = run_flow(str(tmp_path / "b"), spec_net(1), save=False)
    assert fingerprint(a["modified.onnx"]) != fingerprint(b["modified.onnx"])
    with pytest.raises(ValueError) as error:
        amct.save_model(a["modified.onnx"], b["record.txt"], a["save"])
    message = str(error.value)
    assert a["modified.onnx"] in message and b["record.txt"] in message
    assert "different quantize_model runs" in message
    assert not os.path.exists(os.path.dirname(a["save"]))

    # The record text is still exactly AMCT's: the link lives in a sidecar.
    assert "fingerprint" not in open(a["record.txt"]).read()
    assert os.path.exists(a["record.txt"] + ".amct.json")
    written = amct.save_model(a["modified.onnx"], a["record.txt"], a["save"])
    assert [fingerprint(p) for p in written] == [fingerprint(a["modified.onnx"])] * 3

    # Without the sidecar (a record AMCT wrote, or one copied alone) the pair is accepted.
    os.remove(b["record.txt"] + ".amct.json")
    amct.save_model(a["modified.onnx"], b["record.txt"], a["save"])


def test_recalibrated_record_of_the_same_run_is_accepted(tmp_path):
    """Calibrating again on other data keeps the weights, so the pair still matches."""
    model = spec_net(0)
    a = run_flow(str(tmp_path / "a"), model, save=False)
    calib = amct.quantize_model(a["config.json"], str(tmp_path / "again.onnx"), str(tmp_path / "again.txt"), model, X)
    with torch.no_grad():
        calib(X * 2)
    assert open(tmp_path / "again.txt").read() != open(a["record.txt"]).read()
    amct.save_model(a["modified.onnx"], str(tmp_path / "again.txt"), a["save"])


# ---- item 15: a record write that fails is retried ----

def test_failed_record_write_is_retried_by_the_next_batch(tmp_path):
    model = spec_net()
    record_dir = tmp_path / "records"
    record = str(record_dir / "record.txt")
    config, modified = str(tmp_path / "c.json"), str(tmp_path / "m.onnx")
    amct.create_quant_config(config, model, X, batch_num=2)
    calib = amct.quantize_model(config, modified, record, model, X)
    calibrator = calib.conv1._calibrator
    with torch.no_grad():
        calib(X)
        # A file where the record's directory was: the directory cannot be
        # recreated, so writing the record fails (as with a full disk).
        shutil.rmtree(record_dir)
        record_dir.write_text("not a directory")
        with pytest.raises(OSError, match="record"):
            calib(X)  # the last batch
        assert not calibrator.finished
        with pytest.raises(OSError, match="record"):
            calib(X)  # still failing: raised again, not swallowed
        assert not calibrator.finished
        record_dir.unlink()
        record_dir.mkdir()
        calib(X)  # one more batch retries the write
    assert calibrator.finished
    assert "scale_d" in open(record).read()
    written = amct.save_model(modified, record, str(tmp_path / "out" / "m"))
    assert len(written) == 3


# ---- item 19: two flows in two threads ----

def test_two_flows_in_two_threads(tmp_path):
    factories = {"spec": (spec_net, torch.randn(2, 3, 8, 8)), "resnet": (tiny_resnet, torch.randn(2, 3, 16, 16))}
    errors = {}

    def work(name, model, root):
        try:
            run_flow(root, model, factories[name][1])
        except Exception as error:  # reported below with the thread's name
            errors[name] = error

    for round_index in range(2):
        # The models are built here: their factories seed torch's global
        # generator, which two threads would share.
        models = {name: factory() for name, (factory, _) in factories.items()}
        threads = [threading.Thread(target=work, args=(name, models[name], str(tmp_path / f"t{round_index}" / name)))
                   for name in factories]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == {}
    # The records match those of the same flows run one after the other: the
    # weight factors exactly; the activation factors up to float32 rounding,
    # since torch splits its reductions differently when two flows share the
    # cores.
    for name, (factory, x) in factories.items():
        alone = read_record(run_flow(str(tmp_path / "alone" / name), factory(), x)["record.txt"])
        for round_index in range(2):
            threaded = read_record(os.path.join(tmp_path, f"t{round_index}", name, "record.txt"))
            assert list(threaded) == list(alone), name
            for layer, entry in threaded.items():
                assert list(entry.scale_w) == list(alone[layer].scale_w), (name, layer)
                assert entry.scale_d == pytest.approx(alone[layer].scale_d, rel=1e-5), (name, layer)
                assert abs(entry.offset_d - alone[layer].offset_d) <= 1, (name, layer)


# ---- item 20: concurrent `amct save-model` on one prefix ----

def find_cli():
    if os.environ.get("AMCT_CLI"):
        return os.environ["AMCT_CLI"]
    return shutil.which("amct")


CLI = find_cli()


@pytest.mark.skipif(CLI is None, reason="amct CLI not found (set AMCT_CLI or put amct on PATH)")
def test_concurrent_cli_runs_on_one_prefix_leave_one_set(tmp_path):
    # Two runs of the same network with other weights take the same time, so
    # their writes overlap; the graph input name tells their outputs apart.
    flows = {name: run_flow(str(tmp_path / name), spec_net(seed), save=False, input_names=[name])
             for seed, name in enumerate(("run_a", "run_b"))}
    prefix = str(tmp_path / "out" / "net")
    rounds, processes, mixed = 15, 4, []
    for round_index in range(rounds):
        procs = []
        for i in range(processes):
            flow = flows["run_a" if i % 2 == 0 else "run_b"]
            procs.append(subprocess.Popen([CLI, "save-model", "--model", flow["modified.onnx"], "--record",
                                           flow["record.txt"], "--save-path", prefix],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for proc in procs:
            assert proc.wait() == 0, proc.stderr.read().decode()
            proc.stderr.close()
        runs = [onnx.load(f"{prefix}_{o}_model.onnx").graph.input[0].name for o in OUTPUTS]
        if len(set(runs)) != 1:
            mixed.append((round_index, runs))
        else:
            expected = fingerprint(flows[runs[0]]["modified.onnx"])
            assert [fingerprint(f"{prefix}_{o}_model.onnx") for o in OUTPUTS] == [expected] * 3
    assert mixed == [], f"{len(mixed)} of {rounds} rounds left a mixed set: {mixed}"
    assert sorted(os.listdir(tmp_path / "out")) == [f"net_{o}_model.onnx" for o in OUTPUTS]
