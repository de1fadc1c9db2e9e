"""Peak memory and time of the PTQ flow on one large Linear layer.

Each step runs in a fresh process, as a user's script would run it. A step's
peak RSS is the kernel's high-water mark (VmHWM), reset just before the step
(`echo 5 > /proc/self/clear_refs`), so it is exact whatever C++ allocates.
RSS counts anonymous memory and mapped file pages alike; the RssAnon and
RssFile columns are the largest of each seen in the step's process, sampled
every 10 ms from outside it (the kernel keeps no high-water mark of each;
the GIL would stop a sampling thread inside it while C++ runs).

How the weights count: the Python steps hold the user's torch model, whose
weights are part of the process (1x of the ratio) as in a user's script, and
the imports of torch and the extension (the "import GB" column). The ratio is
the whole peak over the weights' size. save_model runs in its own process
too, from files only, and `amct save-model` (the CLI, no torch) is measured
from outside (wait4's ru_maxrss). The last row runs the whole flow in one
process, with the calibration model released before save_model.

    python3 benchmarks/large_model_memory.py --features 16000     # ~1 GB
    python3 benchmarks/large_model_memory.py --features 24000     # ~2.3 GB
    python3 benchmarks/large_model_memory.py --features 8000 --external-data-limit 100000000

--external-data-limit moves the modified ONNX's and the outputs' weights to
external data below AMCT's 2,000,000,000 bytes, to measure that path on a
smaller model.

The machine needs about 2.5x the weights' size free, and 5x on disk in
--workdir (the modified ONNX and the three outputs hold the weights again).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

STEPS = ("create_quant_config", "quantize_model+calibration", "save_model", "amct save-model", "whole flow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_kib(pid="self"):
    """VmHWM, VmRSS, RssAnon and RssFile of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    return values


class PeakSampler:
    """Largest RssAnon and RssFile of `pid` seen while running."""

    def __init__(self, pid):
        self.pid, self.anon, self.file = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                now = status_kib(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            if "RssAnon" not in now:  # exited (a zombie has no memory)
                return
            self.anon, self.file = max(self.anon, now["RssAnon"]), max(self.file, now["RssFile"])
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measured(stage, results, work):
    """Runs work() with the process's high-water mark reset; records its figures."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    out = work()
    results.append({"stage": stage, "peak_kib": status_kib()["VmHWM"], "seconds": time.perf_counter() - start})
    return out


def build_model(features):
    import torch

    torch.manual_seed(0)
    # A layer needs a module name: the root module has none.
    model = torch.nn.Sequential(torch.nn.Linear(features, features)).eval()
    return model, torch.randn(4, features)


def run_step(step, features, workdir, limit):
    """Runs `step` in this process; returns the figures of each stage."""
    import amct_pytorch as amct
    import torch

    config = os.path.join(workdir, "config.json")
    modified = os.path.join(workdir, "modified.onnx")
    record = os.path.join(workdir, "record.txt")
    save_path = os.path.join(workdir, "out", "linear")
    results = []
    model = sample = None
    if step != "save_model":
        model, sample = build_model(features)
    if step in ("create_quant_config", "whole flow"):
        measured("create_quant_config", results, lambda: amct.create_quant_config(config, model, sample))
    if step in ("quantize_model+calibration", "whole flow"):
        def quantize():
            calib = amct.quantize_model(config, modified, record, model, sample, external_data_limit=limit)
            with torch.no_grad():
                calib(sample)
            return calib

        calib = measured("quantize_model+calibration", results, quantize)
        del calib  # the user's script is done with it
    if step in ("save_model", "whole flow"):
        measured("save_model", results, lambda: amct.save_model(modified, record, save_path, external_data_limit=limit))
    return results


def child(args):
    import amct_pytorch  # noqa: F401  (the baseline includes torch and the extension)

    baseline = status_kib()["VmRSS"]
    results = run_step(args.child, args.features, args.workdir, args.external_data_limit)
    if args.child == "whole flow":  # one row: the peak over every stage
        results = [{"stage": "whole flow", "peak_kib": max(r["peak_kib"] for r in results),
                    "seconds": sum(r["seconds"] for r in results)}]
    print(json.dumps({"baseline_kib": baseline, "results": results}))


def find_cli():
    built = [p for p in glob.glob(os.path.join(REPO, "build", "*", "amct")) if os.access(p, os.X_OK)]
    return os.environ.get("AMCT_CLI") or shutil.which("amct") or (max(built, key=os.path.getmtime) if built else None)


def run_cli(workdir, limit):
    cli = find_cli()
    if cli is None:
        return None, "amct CLI not found (set AMCT_CLI or build build/<dir>/amct)"
    start = time.perf_counter()
    process = subprocess.Popen([cli, "save-model", "--model", os.path.join(workdir, "modified.onnx"), "--record",
                                os.path.join(workdir, "record.txt"), "--save-path",
                                os.path.join(workdir, "out-cli", "linear")]
                               + (["--external-data-limit", str(limit)] if limit else []),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with PeakSampler(process.pid) as sampler:
        _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if status != 0:
        return None, stderr[-3000:]
    return {"baseline_kib": 0, "anon_kib": sampler.anon, "file_kib": sampler.file,
            "results": [{"stage": "amct save-model", "peak_kib": usage.ru_maxrss,
                         "seconds": time.perf_counter() - start}]}, ""


def run_child(step, args, workdir):
    """Runs one Python step in a fresh process, sampled from here."""
    limit = ["--external-data-limit", str(args.external_data_limit)] if args.external_data_limit else []
    process = subprocess.Popen([sys.executable, __file__, "--child", step, "--features", str(args.features),
                                "--workdir", workdir] + limit, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with PeakSampler(process.pid) as sampler:
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        return None, stderr.decode(errors="replace")[-3000:]
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    report.update(anon_kib=sampler.anon, file_kib=sampler.file)
    return report, ""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=16000, help="Linear(features, features); 16000 is ~1 GB")
    parser.add_argument("--workdir", default=None, help="where the files go (default: a temporary directory)")
    parser.add_argument("--external-data-limit", type=int, default=None,
                        help="bytes from which weights go to external data (default: AMCT's 2,000,000,000)")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    workdir = args.workdir or tempfile.mkdtemp(prefix="amct-large-")
    os.makedirs(workdir, exist_ok=True)
    weights = (args.features * args.features + args.features) * 4
    gb = 1024 / 1e9  # per KiB
    print(f"Linear({args.features}, {args.features}): {weights / 1e9:.2f} GB of float32 weights; files in {workdir}")
    print(f"{'step':<28} {'peak RSS GB':>11} {'ratio':>6} {'RssAnon GB':>10} {'RssFile GB':>10} "
          f"{'import GB':>9} {'seconds':>8}")
    try:
        for step in STEPS:
            if step == "amct save-model":
                report, error = run_cli(workdir, args.external_data_limit)
            else:
                report, error = run_child(step, args, workdir)
            if report is None:
                print(f"{step}: failed\n{error}")
                return 1
            for row in report["results"]:
                peak = row["peak_kib"] * gb
                print(f"{row['stage']:<28} {peak:>11.2f} {row['peak_kib'] * 1024 / weights:>6.2f} "
                      f"{report['anon_kib'] * gb:>10.2f} {report['file_kib'] * gb:>10.2f} "
                      f"{report['baseline_kib'] * gb:>9.2f} {row['seconds']:>8.1f}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
