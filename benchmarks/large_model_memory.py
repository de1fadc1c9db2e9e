"""Peak memory and time of the PTQ flow on one large Linear layer.

Each step runs in a fresh process, as a user's script would run it, and
reports its own peak RSS (getrusage ru_maxrss): create_quant_config and
quantize_model + calibration hold the user's model (the weights once) plus
what the flow adds; save_model reads only files. The last row runs the whole
flow in one process. A model of 2 GB or more goes through ONNX external data.

    python3 benchmarks/large_model_memory.py --features 16000     # ~1 GB
    python3 benchmarks/large_model_memory.py --features 24000     # ~2.3 GB

The machine needs about 3x the weights' size free, and as much disk in
--workdir (the modified ONNX and the three outputs hold the weights again).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

STEPS = ("create_quant_config", "quantize_model+calibration", "save_model", "whole flow")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def build_model(features):
    import torch

    torch.manual_seed(0)
    # A layer needs a module name: the root module has none.
    model = torch.nn.Sequential(torch.nn.Linear(features, features)).eval()
    return model, torch.randn(4, features)


def run_step(step, features, workdir):
    """Runs `step` in this process; returns seconds per stage."""
    import amct_pytorch as amct
    import torch

    config = os.path.join(workdir, "config.json")
    modified = os.path.join(workdir, "modified.onnx")
    record = os.path.join(workdir, "record.txt")
    save_path = os.path.join(workdir, "out", "linear")
    times = {}
    model = sample = None
    if step != "save_model":
        model, sample = build_model(features)
    if step in ("create_quant_config", "whole flow"):
        start = time.perf_counter()
        amct.create_quant_config(config, model, sample)
        times["create_quant_config"] = time.perf_counter() - start
    if step in ("quantize_model+calibration", "whole flow"):
        start = time.perf_counter()
        calib = amct.quantize_model(config, modified, record, model, sample)
        with torch.no_grad():
            calib(sample)
        times["quantize_model+calibration"] = time.perf_counter() - start
        del calib
    if step in ("save_model", "whole flow"):
        start = time.perf_counter()
        amct.save_model(modified, record, save_path)
        times["save_model"] = time.perf_counter() - start
    return times


def child(args):
    import amct_pytorch  # noqa: F401  (the baseline includes torch and the extension)

    baseline = peak_rss_bytes()
    times = run_step(args.child, args.features, args.workdir)
    print(json.dumps({"peak": peak_rss_bytes(), "baseline": baseline, "times": times}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=16000, help="Linear(features, features); 16000 is ~1 GB")
    parser.add_argument("--workdir", default=None, help="where the files go (default: a temporary directory)")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="amct-large-")
    os.makedirs(workdir, exist_ok=True)
    weights = (args.features * args.features + args.features) * 4
    print(f"Linear({args.features}, {args.features}): {weights / 1e9:.2f} GB of float32 weights; files in {workdir}")
    print(f"{'step':<28} {'weights GB':>10} {'peak RSS GB':>12} {'ratio':>6} {'above import GB':>16} {'seconds':>8}")
    try:
        for step in STEPS:
            result = subprocess.run([sys.executable, __file__, "--child", step, "--features", str(args.features),
                                     "--workdir", workdir], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                print(f"{step}: failed\n{result.stderr[-3000:]}")
                return 1
            report = json.loads(result.stdout.strip().splitlines()[-1])
            seconds = " + ".join(f"{t:.1f}" for t in report["times"].values())
            print(f"{step:<28} {weights / 1e9:>10.2f} {report['peak'] / 1e9:>12.2f} {report['peak'] / weights:>6.2f} "
                  f"{(report['peak'] - report['baseline']) / 1e9:>16.2f} {seconds:>8}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
