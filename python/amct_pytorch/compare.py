"""Parity check between the float, fake-quant and QDQ models (``amct compare``).

Runs each model in ONNX Runtime on the same inputs and reports, per model
output and per quantized layer, cosine similarity, SQNR (dB), max abs error
and the share of elements within one 8-bit step of the reference
((max - min) / 255 of the reference tensor). The metrics and the graph edits
that expose layer results and feed layer inputs are C++ (amct_pytorch._amct);
this module only runs ONNX Runtime and formats.

Per layer, "qdq_vs_fake_quant" compares the results each model computes from
its own upstream layers, so it includes the one-step rounding differences
that arose above the layer and grew on the way down (deep layers of
RegNet/Inception-like networks show them most). "qdq_vs_fq_same_input" runs
each QDQ layer on the fake-quant model's value of the tensor it quantizes
(see feed_reference_inputs in include/amct/qdq_parity.h): it shows whether
the layer itself computes what the fake-quant layer computes.

Command line::

    python3 -m amct_pytorch.compare --fake-quant FQ.onnx --qdq QDQ.onnx \\
        [--float FLOAT.onnx] [--input NAME=x.npy ...] [--batch N] [--json OUT.json]
"""

import argparse
import json
import math
import os
import sys

import numpy as np

from amct_pytorch import _amct

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def random_inputs(model_file, batch=2, seed=0):
    """Standard-normal float inputs (zeros for integer ones) for the model's
    inputs; dynamic dimensions take `batch`."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for arg in _session(model_file).get_inputs():
        shape = [d if isinstance(d, int) else batch for d in arg.shape]
        dtype = _DTYPES.get(arg.type, np.float32)
        inputs[arg.name] = (rng.standard_normal(shape).astype(dtype) if dtype == np.float32
                            else np.zeros(shape, dtype))
    return inputs


def _run_session(model, inputs):
    session = _session(model)
    feed = {arg.name: inputs[arg.name] for arg in session.get_inputs()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def _run(model_file, layers, inputs, extra_tensors=()):
    """Outputs by name, layer results by layer name and the values of
    extra_tensors. Two sessions: extra graph outputs stop ONNX Runtime from
    fusing the layers they come from, so the model outputs are taken from the
    model as it is."""
    outputs = _run_session(model_file, inputs)
    if not layers:
        return outputs, {}, {}
    model_bytes, pairs = _amct.expose_layer_outputs(model_file, layers, list(extra_tensors))
    values = _run_session(model_bytes, inputs)
    return outputs, {layer: values[tensor] for layer, tensor in pairs}, {t: values[t] for t in extra_tensors}


def _run_fake_quant_and_same_input(fake_quant_model, qdq_model, layers, inputs):
    """The fake-quant model's results (as _run), and the QDQ layer results
    with each layer's quantization reading the fake-quant model's value of
    the tensor it quantizes."""
    model_bytes, pairs, fed = _amct.feed_reference_inputs(qdq_model, fake_quant_model, layers)
    fake_quant = _run(fake_quant_model, layers, inputs, [tensor for _, tensor in fed])
    feed = dict(inputs)
    feed.update({name: fake_quant[2][tensor] for name, tensor in fed})
    values = _run_session(model_bytes, feed)
    return fake_quant, {layer: values[tensor] for layer, tensor in pairs}


def _metrics(reference, other, what):
    ref = np.ascontiguousarray(reference, dtype=np.float32).ravel()
    oth = np.ascontiguousarray(other, dtype=np.float32).ravel()
    return _amct.parity_metrics(ref, oth, what)


def compare(fake_quant_model, qdq_model, inputs, float_model=None, layers=True):
    """Returns {"outputs": {name: {pair: metrics}}, "layers": {layer: {pair: metrics}}}
    where pair is "qdq_vs_fake_quant", "fake_quant_vs_float" or "qdq_vs_float", and for
    layers also "qdq_vs_fq_same_input" (the QDQ layer run on the fake-quant model's input).

    inputs: a dict of input name -> array. float_model is optional; its
    layers are compared where it has nodes of the same names."""
    names = _amct.fake_quant_layers(fake_quant_model) if layers else []
    if names:
        fake_quant, same_input = _run_fake_quant_and_same_input(fake_quant_model, qdq_model, names, inputs)
    else:
        fake_quant, same_input = _run(fake_quant_model, names, inputs), {}
    results = {"fake_quant": fake_quant, "qdq": _run(qdq_model, names, inputs)}
    if float_model:
        results["float"] = _run(float_model, names, inputs)
    graph_outputs = [o.name for o in _session(fake_quant_model).get_outputs()]
    pairs = [("qdq_vs_fake_quant", "fake_quant", "qdq"), ("fake_quant_vs_float", "float", "fake_quant"),
             ("qdq_vs_float", "float", "qdq")]
    report = {"outputs": {}, "layers": {}}
    for index, name in enumerate(graph_outputs):
        entry = {}
        for label, ref, other in pairs:
            if ref in results and other in results:
                # Outputs are matched by position: exporters may name them differently.
                ref_value = list(results[ref][0].values())[index]
                entry[label] = _metrics(ref_value, list(results[other][0].values())[index], f"output '{name}' {label}")
        report["outputs"][name] = entry
    for layer in names:
        entry = {}
        for label, ref, other in pairs:
            if ref in results and other in results and layer in results[ref][1] and layer in results[other][1]:
                entry[label] = _metrics(results[ref][1][layer], results[other][1][layer], f"layer '{layer}' {label}")
        if layer in results["fake_quant"][1] and layer in same_input:
            entry["qdq_vs_fq_same_input"] = _metrics(results["fake_quant"][1][layer], same_input[layer],
                                                     f"layer '{layer}' qdq_vs_fq_same_input")
        report["layers"][layer] = entry
    return report


def format_table(report):
    """The report as a fixed-width text table."""
    lines = [f"{'kind':<7}{'name':<32}{'pair':<22}{'cosine':>12}{'SQNR dB':>10}{'max abs':>12}{'<=1 step':>10}"]
    for kind in ("outputs", "layers"):
        for name, entry in report[kind].items():
            for label, m in entry.items():
                sqnr = "inf" if math.isinf(m["sqnr_db"]) else f"{m['sqnr_db']:.2f}"
                lines.append(f"{kind[:-1]:<7}{name[:31]:<32}{label:<22}{m['cosine']:>12.8f}{sqnr:>10}"
                             f"{m['max_abs_error']:>12.4g}{m['within_step'] * 100:>9.3f}%")
    return "\n".join(lines)


def _json_safe(report):
    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return None if isinstance(value, float) and math.isinf(value) else value
    return fix(report)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="amct compare",
        description="Run the fake-quant and QDQ models (and optionally the float model) in ONNX Runtime on the "
                    "same inputs; report cosine, SQNR (dB), max abs error and the share of elements within one "
                    "8-bit step, per output and per quantized layer. Per layer, qdq_vs_fake_quant includes the "
                    "rounding differences accumulated by the layers above; qdq_vs_fq_same_input runs the QDQ layer "
                    "on the fake-quant model's input. SQNR inf (null in JSON) means identical.")
    parser.add_argument("--fake-quant", required=True, help="<prefix>_fake_quant_model.onnx")
    parser.add_argument("--qdq", required=True, help="<prefix>_qdq_model.onnx")
    parser.add_argument("--float", dest="float_model", help="float ONNX model (optional)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                        help="an input array; without any, standard-normal inputs with --batch for dynamic axes")
    parser.add_argument("--batch", type=int, default=2, help="batch size of random inputs (default 2)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--no-layers", action="store_true", help="compare model outputs only")
    args = parser.parse_args(argv)
    for label, path in (("--fake-quant", args.fake_quant), ("--qdq", args.qdq), ("--float", args.float_model)):
        if path is not None and not os.path.isfile(path):
            parser.exit(1, f"amct compare: error: {label} '{path}' does not exist\n")

    if args.input:
        inputs = {}
        for item in args.input:
            name, sep, path = item.partition("=")
            if not sep:
                parser.error(f"--input '{item}': expected NAME=FILE.npy")
            try:
                inputs[name] = np.load(path)
            except (OSError, ValueError) as error:
                parser.exit(1, f"amct compare: error: --input '{item}': {error}\n")
    else:
        inputs = random_inputs(args.fake_quant, args.batch)
    try:
        report = compare(args.fake_quant, args.qdq, inputs, args.float_model, layers=not args.no_layers)
    except Exception as error:  # onnxruntime and the core raise many types; report them uniformly
        parser.exit(1, f"amct compare: error: {type(error).__name__}: {error}\n")
    print(format_table(report))
    if args.json:
        # Written next to the target, then renamed: no half-written report.
        with open(args.json + ".tmp", "w", encoding="utf-8") as f:
            json.dump(_json_safe(report), f, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
