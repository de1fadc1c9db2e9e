"""Smoke version of `make bench` (benchmarks/bench_ptq.py) on tiny subsets,
so that the benchmark code cannot rot. The numbers are not checked, only
that every step runs and the report is written.

- Fashion-MNIST (Debian dataset-fashion-mnist, installed by `make test`):
  the whole benchmark path (training, every tool in its own process,
  evaluation, latency, RESULTS.md).
- MiniLM and EfficientNet-Lite0 need the bench-only packages (`make bench`
  installs them): when they are installed, their data loaders, models and
  metrics are checked in-process; otherwise they are skipped with the reason.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

from bench_common.workloads import WORKLOADS  # noqa: E402


def test_fashion_benchmark_end_to_end(tmp_path):
    reason = WORKLOADS["fashion"](smoke=True).unavailable()
    assert reason is None, f"the Fashion-MNIST benchmark must run in the smoke test: {reason}"
    out = tmp_path / "out"
    # ORT Entropy and Percentile differ from MinMax only by calibrate_method: left out to save time
    cmd = [sys.executable, os.path.join(BENCH, "bench_ptq.py"), "--smoke", "--workloads", "fashion", "--out", str(out),
           "--tools", "amct-ifmr", "amct-hfmg", "amct-auto", "amct-hfmg-dmq0.3-ada20", "ort-minmax", "pt2e-x86"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    entry = results["workloads"]["fashion"]
    assert "skipped" not in entry
    for tool in ("amct-ifmr", "amct-hfmg", "amct-auto", "amct-hfmg-dmq0.3-ada20", "ort-minmax"):
        result = entry["tools"][tool]
        run = result["runs"]["2"]
        assert "error" not in run, run.get("traceback", run.get("error"))
        assert run["calib_s"] > 0 and run["float_forward_s"] > 0 and run["peak_rss_mb"] > 0
        for kind, art in result["artifacts"].items():
            if "na" in art:
                continue
            assert "metrics" in art, art
            assert 0 <= art["metrics"]["top1"] <= 100
            assert art["latency_ms"] > 0
    assert "fake-quant" in entry["tools"]["amct-ifmr"]["artifacts"]
    auto = entry["tools"]["amct-auto"]["runs"]["2"]["info"]
    assert auto["evaluations"] >= 1 and len(auto["validation_agreement"]) == auto["evaluations"]
    pt2e = entry["tools"]["pt2e-x86"]
    if "skipped" not in pt2e:
        assert "error" not in pt2e["runs"]["2"], pt2e["runs"]["2"].get("traceback")
        assert "metrics" in pt2e["artifacts"]["torch"]
    text = (out / "RESULTS.md").read_text()
    assert "SMOKE RUN" in text and "Fashion-MNIST CNN" in text and "Where amct is behind a peer" in text
    assert "amct IFMR / fake-quant ONNX" in text and "amct HFMG + DMQ 0.3 + AdaRound (20 it.) / QDQ ONNX" in text
    # A subset of the tools: the header says so.
    assert "**Partial run** of `python benchmarks/bench_ptq.py` on workloads fashion and tools amct-ifmr," in text


def test_partial_results_get_their_own_files(tmp_path):
    """--report-only with another --results-name: the report, its plots and
    nothing of RESULTS.md's."""
    from bench_common import report

    results = {"smoke": True, "batch_counts": [2], "machine": {"cores": 2}, "started": "now", "wall_s": 1.0,
               "subset": {"workloads": ["fashion"], "tools": ["amct-dmq"]},
               "workloads": {"fashion": {"name": "fashion", "title": "Fashion", "skipped": "no data"}}}
    written = report.write(results, str(tmp_path), "RESULTS-issue8.md")
    assert [os.path.basename(p) for p in written] == ["RESULTS-issue8.md"]
    assert report.json_name("RESULTS-issue8.md") == "RESULTS-issue8.json"
    assert report.json_name("RESULTS.md") == "results.json"
    assert "**Partial run**" in (tmp_path / "RESULTS-issue8.md").read_text()
    assert not (tmp_path / "RESULTS.md").exists()
    # Two runs on different workloads make one report naming both.
    other = dict(results, started="later", load=[1.0, 2.0], subset={"workloads": ["minilm"], "tools": ["amct-ada"]},
                 workloads={"minilm": {"name": "minilm", "title": "MiniLM", "skipped": "no model"}})
    merged = report.merge_runs([results, other])
    assert list(merged["workloads"]) == ["fashion", "minilm"]
    assert merged["subset"] == {"workloads": ["fashion", "minilm"], "tools": ["amct-ada", "amct-dmq"]}
    report.write(merged, str(tmp_path), "RESULTS-issue8.md")
    text = (tmp_path / "RESULTS-issue8.md").read_text()
    assert "| run of minilm: started, commit, load at start / end | later, None, 1.00 / 2.00 |" in text
    with pytest.raises(ValueError, match="runs to merge must cover different workloads"):
        report.merge_runs([results, results])


def test_side_results_are_reported_with_their_targets(tmp_path):
    """make bench's calibration_cost.py and qdq_latency.py results: their
    tables, and issue 9's targets judged from them (met and missed)."""
    from bench_common import report

    forwards = {"kind": "calibration_forwards", "started": "t0", "model": "EfficientNet-Lite0",
                "batch_shape": "4x3x224x224", "threads": 2,
                "algos": {"ifmr": [{"batch_num": 32, "float_s": 2.0, "folded_s": 1.9, "calib_s": 3.2,
                                    "peak_rss_mb": 600.0}],
                          "hfmg": [{"batch_num": 32, "float_s": 2.0, "folded_s": 1.9, "calib_s": 2.5,
                                    "peak_rss_mb": 610.0}]}}
    latency = {"kind": "qdq_latency", "started": "t1", "onnxruntime": "1.0", "threads": 2, "runs": 40,
               "rows": [{"model": "ResNet-50", "batch": 8, "float_ms": 100.0, "full_ms": 30.0, "layers_ms": 70.0,
                         "static_ms": 31.0},
                        {"model": "EfficientNet-B0", "batch": 8, "float_ms": 50.0, "full_ms": 45.0,
                         "layers_ms": 200.0, "static_ms": 44.0},
                        {"model": "all-MiniLM-L6-v2 seq 64", "batch": 8, "float_ms": 10.0, "full_ms": 9.0,
                         "layers_ms": 9.0, "static_ms": 9.5}],
               "skipped": {"MobileNetV3-Large": "no torch"}, "minilm_cosines": {"without": 0.9598, "with": 0.96}}
    results = {"smoke": True, "batch_counts": [2], "machine": {"cores": 2}, "started": "now", "wall_s": 1.0,
               "subset": None, "workloads": {}, "calibration_forwards": forwards, "qdq_latency": latency}
    report.write(results, str(tmp_path), "RESULTS-side.md")
    text = (tmp_path / "RESULTS-side.md").read_text()
    assert "| IFMR | 32 | 2.000 | 3.200 | 1.60 | 1.68 | 600 |" in text
    assert "| ResNet-50 | 8 | 100.00 | 30.00 | 70.00 | 31.00 | 0.97 | 0.30 | 0.70 | 0.31 |" in text
    assert "| MobileNetV3-Large | skipped: no torch |" in text
    assert "0.9598 with the attention MatMuls in float, 0.9600 with them quantized" in text
    rows = [line for line in text.splitlines() if "(issue 9)" in line]
    assert ("| EfficientNet-Lite0, 32 batches of 4x3x224x224 | calibration forwards (IFMR) <= 1.3x float forwards "
            "(issue 9) | 1.60x | **no** |") in rows
    assert ("| EfficientNet-Lite0, 32 batches of 4x3x224x224 | calibration forwards (HFMG) <= 1.3x float forwards "
            "(issue 9) | 1.25x | yes |") in rows
    assert ("| EfficientNet-B0, batch 8 | full-INT8 QDQ latency <= 1x quantize_static's (issue 9) | 1.02x "
            "| **no** |") in rows
    assert ("| ResNet-50 | full-INT8 QDQ latency <= 0.6x float, batch 8 (issue 9) | 0.30x (quantize_static 0.31x) "
            "| yes |") in rows
    assert ("| EfficientNet-B0 | full-INT8 QDQ latency <= 0.6x float, batch 8 (issue 9) | 0.90x "
            "(quantize_static 0.88x) | **no** |") in rows
    # MiniLM is held to the latency target against quantize_static only.
    assert not [r for r in rows if r.startswith("| all-MiniLM-L6-v2 seq 64 | full-INT8 QDQ latency <= 0.6x")]
    # A merged report of several runs drops them: each belongs to its own run.
    other = dict(results, workloads={"minilm": {"name": "minilm", "title": "MiniLM", "skipped": "no model"}})
    first = dict(results, workloads={"fashion": {"name": "fashion", "title": "Fashion", "skipped": "no data"}})
    merged = report.merge_runs([first, other])
    assert "calibration_forwards" not in merged and "qdq_latency" not in merged


def test_bench_rejects_side_results_of_another_kind(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_ptq.py"), "--smoke", "--workloads", "fashion",
                           "--side-results", str(bad), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert f"{bad}: not the --json output of calibration_cost.py or qdq_latency.py" in proc.stderr


def test_only_the_search_tools_skip_the_smaller_batch_counts():
    from bench_common.tools import largest_count_only

    assert largest_count_only("amct-auto") and largest_count_only("amct-auto-hfmg")
    assert largest_count_only("amct-hfmg-ada200-arqinit") and largest_count_only("amct-hfmg-dmq0.3-ada20")
    assert not any(largest_count_only(t) for t in ("amct-ifmr", "amct-hfmg-pc-full", "amct-dmq", "ort-minmax",
                                                   "pt2e-x86"))


def test_amct_tool_names():
    from bench_common.tools import amct_variant, check_tool, tool_label

    plain = {"act": "ifmr", "pc": False, "full": False, "dmq": None, "ada": None, "arqinit": False}
    assert amct_variant("amct-dmq") == dict(plain, dmq=0.5)
    assert amct_variant("amct-hfmg-dmq0.3-ada200") == dict(plain, act="hfmg", dmq=0.3, ada=200)
    assert amct_variant("amct-ada") == dict(plain, ada=1000)
    assert amct_variant("amct-hfmg-pc") == dict(plain, act="hfmg", pc=True)
    assert amct_variant("amct-hfmg-pc-full") == dict(plain, act="hfmg", pc=True, full=True)
    assert amct_variant("amct-hfmg-ada-arqinit") == dict(plain, act="hfmg", ada=1000, arqinit=True)
    assert tool_label("amct-hfmg-ada20-arqinit") == "amct HFMG + AdaRound (20 it.), ARQ initial scale"
    assert amct_variant("amct-auto") is None and amct_variant("amct-auto-hfmg") is None
    assert amct_variant("ort-minmax") is None
    assert tool_label("amct-hfmg-dmq0.3-ada200") == "amct HFMG + DMQ 0.3 + AdaRound (200 it.)"
    assert tool_label("amct-ada") == "amct IFMR + AdaRound"
    assert tool_label("amct-auto-hfmg") == "amct auto calibration (HFMG)"
    assert tool_label("amct-hfmg-pc") == "amct HFMG, per-channel Linear"
    assert tool_label("amct-hfmg-pc-full") == "amct HFMG, per-channel Linear, full-INT8 QDQ"
    with pytest.raises(ValueError, match=r"amct-full-pc: unexpected 'pc'"):
        amct_variant("amct-full-pc")
    with pytest.raises(ValueError, match=r"amct-dmq0.9: DMQ migration strength 0.9 is outside AMCT's range \(0.2, 0.8\)"):
        amct_variant("amct-dmq0.9")
    with pytest.raises(ValueError, match=r"amct-ada-dmq: unexpected 'dmq'; expected amct-\[ifmr\|hfmg\]"):
        amct_variant("amct-ada-dmq")
    with pytest.raises(ValueError, match=r"amct-arqinit: unexpected 'arqinit'; expected amct-\[ifmr\|hfmg\]"):
        amct_variant("amct-arqinit")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown tool 'ort-foo'"):
        check_tool("ort-foo")


@pytest.mark.parametrize("name", ["minilm", "effnet"])
def test_heavy_workload_data_model_and_metrics(name):
    workload = WORKLOADS[name](smoke=True)
    reason = workload.unavailable()
    if reason:
        pytest.skip(f"{name}: {reason}")
    torch.set_num_threads(2)
    model = workload.model(log=lambda *a: None)
    batches = workload.calib_batches(2)
    assert len(batches) == 2 and all(len(b) == len(workload.input_names) for b in batches)
    assert tuple(batches[0][0].shape) == tuple(batches[1][0].shape)  # same shapes: ORT's histograms need it
    feeds = workload.eval_inputs()[:2]
    with torch.no_grad():
        model(*batches[0])
        out = np.concatenate([model(*workload.to_torch(f, workload.input_names)).numpy() for f in feeds])
    if name == "minilm":
        _, train_feeds = workload.train_inputs()
        with torch.no_grad():
            emb = np.concatenate([model(*workload.to_torch(f, workload.input_names)).numpy() for f in train_feeds])
        workload.set_train_embeddings(emb)
        full = np.concatenate([model(*workload.to_torch(f, workload.input_names)).detach().numpy()
                               for f in workload.eval_inputs()])
        out = full
    noisy = out + np.random.default_rng(0).normal(0, 1e-3, out.shape).astype(out.dtype)
    same = workload.metrics(out, out)
    near = workload.metrics(out, noisy)
    primary = {"minilm": "cosine", "effnet": "top1_agree"}[name]
    assert same[primary] == pytest.approx(workload.float_metrics(out)[primary], abs=1e-4)
    assert near[primary] <= same[primary] + 1e-6
    assert workload.sample_counts()
