"""One calibration run in a fresh process, so that ru_maxrss is the peak of
this run alone.

    python -m bench_common.worker --workload fashion --tool amct-ifmr --batches 32 --work DIR [--eval] [--smoke]

Prints one JSON line: float forward time over the calibration batches,
calibration wall time (whole flow, float model -> INT8 model) and its
breakdown, peak RSS before and after calibration, and the artifacts. With
--eval, also writes the INT8 outputs over the evaluation set to
DIR/outputs_<artifact>.npy (needed for PT2E, whose INT8 model is a torch
program that cannot leave the process).
"""

import argparse
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_common  # noqa: E402,F401  (offline environment variables)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_status_mb(field):
    """VmRSS / VmHWM of this process from /proc (None where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_hwm():
    """Resets VmHWM (Linux >= 4.0: 5 > /proc/self/clear_refs), so that the
    calibration's own peak can be read even below the import/load peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--eval", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from bench_common.tools import calibrate, preload, quiet, run_outputs
    from bench_common.workloads import WORKLOADS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"workload": args.workload, "tool": args.tool, "batches": args.batches}
    try:
        workload = WORKLOADS[args.workload](smoke=args.smoke)
        with quiet():
            model = workload.model(log=lambda *a: None)
        batches = workload.calib_batches(args.batches)
        preload(args.tool)
        with torch.no_grad():
            model(*batches[0])  # warm-up
            repeats = []
            for _ in range(2):  # the faster of two passes: the machine may be shared
                start = time.perf_counter()
                for batch in batches:
                    model(*batch)
                repeats.append(time.perf_counter() - start)
            result["float_forward_s"] = min(repeats)
            result["float_forward_repeats_s"] = repeats
        import gc

        gc.collect()
        result["rss_before_mb"] = peak_rss_mb()
        result["rss_at_start_mb"] = proc_status_mb("VmRSS")
        hwm_reset = reset_hwm()
        result["load_before"] = os.getloadavg()[0]
        start = time.perf_counter()
        artifacts, times, info = calibrate(args.tool, model, batches, workload, args.work)
        result["calib_s"] = time.perf_counter() - start
        result["load_after"] = os.getloadavg()[0]
        result["peak_rss_mb"] = peak_rss_mb()
        if hwm_reset and result["rss_at_start_mb"] is not None:
            result["calib_peak_rss_mb"] = proc_status_mb("VmHWM")
            result["calib_extra_rss_mb"] = result["calib_peak_rss_mb"] - result["rss_at_start_mb"]
        result["times"] = times
        result["info"] = info
        result["artifacts"] = {k: v for k, v in artifacts.items() if isinstance(v, str)}
        if args.eval:
            feeds = workload.eval_inputs()
            outputs = {}
            for kind, artifact in artifacts.items():
                path = os.path.join(args.work, f"outputs_{kind}.npy")
                try:
                    start = time.perf_counter()
                    with quiet():
                        out = run_outputs(artifact, feeds, workload.input_names, args.threads)
                    import numpy as np

                    np.save(path, out)
                    outputs[kind] = {"path": path, "eval_s": time.perf_counter() - start}
                except Exception as error:  # record, keep the other artifacts
                    outputs[kind] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            result["outputs"] = outputs
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"[:4000]
        result["traceback"] = traceback.format_exc()[-6000:]
    sys.stdout.flush()
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
