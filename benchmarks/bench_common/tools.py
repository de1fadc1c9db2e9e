"""The quantizers compared. Each takes the float torch model and the same
calibration batches and returns the INT8 artifacts it produced plus a
breakdown of its wall time. Every step from the in-memory float model to the
INT8 model is inside the timed calibration (for onnxruntime that includes
the float ONNX export, which is reported separately as export_s)."""

import argparse
import contextlib
import io
import json
import logging
import os
import time
import warnings

import numpy as np
import torch

# The AdaRound tool starts from ARQ's scale: from AMCT's KL scale it loses
# about 20 points of agreement on EfficientNet-Lite0 (README, Benchmarks); 200
# iterations keep make bench within its time.
TOOLS = ["amct-ifmr", "amct-hfmg", "amct-ifmr-pc", "amct-hfmg-pc", "amct-hfmg-pc-full", "amct-auto", "amct-auto-hfmg",
         "amct-dmq", "amct-hfmg-ada200-arqinit", "ort-minmax", "ort-entropy", "ort-percentile", "pt2e-x86"]
# accuracy_based_auto_calibration on the default (IFMR) config and on the HFMG one.
AUTO_TOOLS = ("amct-auto", "amct-auto-hfmg")
TOOL_LABELS = {
    "amct-auto": "amct auto calibration (IFMR)",
    "amct-auto-hfmg": "amct auto calibration (HFMG)",
    "ort-minmax": "ORT MinMax",
    "ort-entropy": "ORT Entropy",
    "ort-percentile": "ORT Percentile",
    "pt2e-x86": "PT2E X86Inductor",
}
HFMG_PARAMS = {"num_bits": 8, "act_algo": "hfmg", "asymmetric": True, "num_of_bins": 4096}
# Classes that take dmq_balancer_param (AMCT's DMQ types).
DMQ_TYPES = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "Linear"}
# AMCT's documented migration strength (its default) and the range it accepts.
DMQ_DEFAULT_STRENGTH = 0.5
DMQ_STRENGTHS = (0.2, 0.8)
# AdaRound: AMCT's defaults except num_iteration, cut from 10000 so that a
# workload's run stays within minutes on 2 cores ("adaN" sets N).
ADA_PARAMS = {"num_bits": 8, "reg_param": 0.01, "warm_start": 0.2, "num_iteration": 1000, "beta_range": [20, 2],
              "wts_algo": "ada_quantize"}
ADA_TYPES = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
# AdaRound draws 32 samples per step (AMCT's batch): its input_data is the
# first calibration batches holding at least that many samples.
ADA_INPUT_SAMPLES = 32


def largest_count_only(tool):
    """Whether a tool runs at the largest batch count only: auto calibration
    and AdaRound cost minutes per run in their per-layer searches whatever the
    batch count, and three runs each would take most of make bench's time."""
    variant = amct_variant(tool)
    return tool in AUTO_TOOLS or (variant is not None and variant["ada"] is not None)


def amct_variant(tool):
    """The settings an amct tool name asks for: "amct-" then the activation
    algorithm (ifmr, the default, or hfmg), "-pc" for per-channel Linear
    weights (linear_channel_wise, beyond AMCT), "-full" for the full-INT8 QDQ
    model (quantize_model(full_int8_qdq=True), beyond AMCT), "-dmq" with an
    optional migration strength (dmq0.3; 0.5 when absent), "-ada" with an
    optional iteration count (ada200) and "-arqinit" for AdaRound starting
    from ARQ's scale (init_scale "arq", beyond AMCT), in this order:
    amct-hfmg-pc-full-dmq0.3-ada-arqinit. None for other tools and the auto
    calibration tools; ValueError for a malformed amct name."""
    if not tool.startswith("amct-") or tool in AUTO_TOOLS:
        return None
    parts = tool.split("-")[1:]
    variant = {"act": "ifmr", "pc": False, "full": False, "dmq": None, "ada": None, "arqinit": False}
    if parts and parts[0] in ("ifmr", "hfmg"):
        variant["act"] = parts.pop(0)
    if parts and parts[0] == "pc":
        variant["pc"] = bool(parts.pop(0))
    if parts and parts[0] == "full":
        variant["full"] = bool(parts.pop(0))
    if parts and parts[0].startswith("dmq"):
        strength = float(parts.pop(0)[3:] or DMQ_DEFAULT_STRENGTH)
        if not DMQ_STRENGTHS[0] <= strength <= DMQ_STRENGTHS[1]:
            raise ValueError(f"{tool}: DMQ migration strength {strength} is outside AMCT's range {DMQ_STRENGTHS}")
        variant["dmq"] = strength
    if parts and parts[0].startswith("ada"):
        variant["ada"] = int(parts.pop(0)[3:] or ADA_PARAMS["num_iteration"])
        if parts and parts[0] == "arqinit":
            variant["arqinit"] = bool(parts.pop(0))
    if parts:
        raise ValueError(f"{tool}: unexpected '{'-'.join(parts)}'; expected "
                         "amct-[ifmr|hfmg][-pc][-full][-dmq[S]][-ada[N][-arqinit]]")
    return variant


def tool_label(tool):
    variant = amct_variant(tool)
    if variant is None:
        return TOOL_LABELS.get(tool, tool)
    label = "amct " + variant["act"].upper()
    if variant["pc"]:
        label += ", per-channel Linear"
    if variant["full"]:
        label += ", full-INT8 QDQ"
    if variant["dmq"] is not None:
        label += f" + DMQ {variant['dmq']:g}"
    if variant["ada"] is not None:
        label += " + AdaRound" + ("" if variant["ada"] == ADA_PARAMS["num_iteration"] else f" ({variant['ada']} it.)")
        if variant["arqinit"]:
            label += ", ARQ initial scale"
    return label


def check_tool(tool):
    """argparse type of --tools: a fixed tool or a well-formed amct variant."""
    if tool in TOOLS:
        return tool
    try:
        if amct_variant(tool) is not None:
            return tool
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    raise argparse.ArgumentTypeError(f"unknown tool {tool!r}; expected one of {TOOLS} or an amct variant "
                                     "amct-[ifmr|hfmg][-pc][-full][-dmq[S]][-ada[N][-arqinit]]")


@contextlib.contextmanager
def quiet():
    """Silences exporter/quantizer chatter (stdout, warnings, INFO logs)."""
    names = ["torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch._export", "root", "torchao",
             "onnxruntime", "amct_pytorch"]
    loggers = [logging.getLogger(n) for n in names] + [logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_float_onnx(model, args, path, workload):
    with quiet():
        torch.onnx.export(model, args, path, input_names=workload.input_names, output_names=workload.output_names,
                          dynamic_axes=workload.dynamic_axes, dynamo=True, external_data=False)
    return path


def _amct(model, batches, workload, work, variant):
    import amct_pytorch as amct

    times = {}
    config = os.path.join(work, "config.json")
    modified = os.path.join(work, "modified.onnx")
    record = os.path.join(work, "record.txt")
    prefix = os.path.join(work, "out", workload.name)
    sample = batches[0]
    start = time.perf_counter()
    # The export settings quantize_model gets, so that both share one export.
    export_settings = dict(input_names=workload.input_names, output_names=workload.output_names,
                           dynamic_axes=workload.dynamic_axes)
    with quiet():
        amct.create_quant_config(config, model, sample, batch_num=len(batches),
                                 linear_channel_wise=variant["pc"], **export_settings)
    with open(config) as f:
        cfg = json.load(f)
    for name, value in cfg.items():
        if not isinstance(value, dict):
            continue
        module = model.get_submodule(name)
        if variant["act"] == "hfmg" and "activation_quant_params" in value:
            value["activation_quant_params"] = dict(HFMG_PARAMS)
        if variant["dmq"] is not None and type(module).__name__ in DMQ_TYPES:
            value["dmq_balancer_param"] = variant["dmq"]
        if variant["ada"] is not None and isinstance(module, ADA_TYPES):
            # channel_wise stays as create_quant_config wrote it (Linear: per tensor).
            value["weight_quant_params"] = dict(ADA_PARAMS, num_iteration=variant["ada"],
                                                channel_wise=value["weight_quant_params"]["channel_wise"])
            if variant["arqinit"]:
                value["weight_quant_params"]["init_scale"] = "arq"
    with open(config, "w") as f:
        json.dump(cfg, f, indent=4)
    if variant["ada"] is not None:
        # AdaRound learns on the layer inputs from input_data: give it
        # calibration batches, as an AMCT user would pass representative data.
        taken = 0
        for taken in range(1, len(batches) + 1):
            if sum(len(b[0]) for b in batches[:taken]) >= ADA_INPUT_SAMPLES:
                break
        sample = tuple(torch.cat(parts) for parts in zip(*batches[:taken]))
    times["config_s"] = time.perf_counter() - start
    if variant["dmq"] is not None:
        # AMCT's flow: the factors come from the first calibration batch.
        start = time.perf_counter()
        with quiet():
            balancer = amct.quantize_preprocess(config, record, model, batches[0])
        with torch.no_grad():
            balancer(*batches[0])
        times["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with quiet():
        calib = amct.quantize_model(config, modified, record, model, sample, full_int8_qdq=variant["full"],
                                    **export_settings)
    times["quantize_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            calib(*batch)
    times["forward_s"] = time.perf_counter() - start
    start = time.perf_counter()
    amct.save_model(modified, record, prefix)
    times["save_s"] = time.perf_counter() - start
    with open(config) as f:
        layers = sum(1 for v in json.load(f).values() if isinstance(v, dict) and v.get("quant_enable", True))
    artifacts = {"fake-quant": prefix + "_fake_quant_model.onnx"}
    qdq = prefix + "_qdq_model.onnx"
    if os.path.exists(qdq):
        artifacts["qdq"] = qdq
    return artifacts, times, {"quantized_layers": layers}


# accuracy_based_auto_calibration's evaluator: the model's agreement with the
# float model on the first evaluation feed (top-1 agreement in %, or the mean
# cosine of embeddings), and the largest drop it accepts. The float model
# agrees fully with itself (100, 1.0), so the drop a user accepts is the gap to
# the fidelity the user wants: issue 8's targets for EfficientNet-Lite0 (top-1
# agreement >= 90%) and MiniLM (mean cosine >= 0.99); for Fashion-MNIST half a
# point of agreement.
AUTO_VALIDATION_FEEDS = 1
AUTO_MAX_DROP = {"fashion": 0.5, "effnet": 10.0, "minilm": 0.01}


def _agreement(workload, float_out, out):
    if workload.name == "minilm":
        a = float_out / np.linalg.norm(float_out, axis=1, keepdims=True)
        b = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return float((a * b).sum(1).mean())
    return 100.0 * float((out.argmax(1) == float_out.argmax(1)).mean())


def _amct_auto(model, batches, workload, work, act):
    import amct_pytorch as amct
    from amct_pytorch.common.auto_calibration import AutoCalibrationEvaluatorBase

    feeds = workload.eval_inputs()[:AUTO_VALIDATION_FEEDS]
    float_out = run_outputs(model, feeds, workload.input_names)
    trials = []

    class Evaluator(AutoCalibrationEvaluatorBase):
        def calibration(self, calibration_model):
            with torch.no_grad():
                for batch in batches:
                    calibration_model(*batch)

        def evaluate(self, evaluated):
            return _agreement(workload, float_out, run_outputs(evaluated, feeds, workload.input_names))

        def metric_eval(self, original_metric, new_metric):
            trials.append(new_metric)
            loss = original_metric - new_metric
            return loss <= AUTO_MAX_DROP[workload.name], loss

    config = os.path.join(work, "config.json")
    record = os.path.join(work, "record.txt")
    prefix = os.path.join(work, "out", workload.name)
    times = {}
    start = time.perf_counter()
    with quiet():
        amct.create_quant_config(config, model, batches[0], batch_num=len(batches), input_names=workload.input_names,
                                 output_names=workload.output_names, dynamic_axes=workload.dynamic_axes)
    if act == "hfmg":
        with open(config) as f:
            cfg = json.load(f)
        for value in cfg.values():
            if isinstance(value, dict) and "activation_quant_params" in value:
                value["activation_quant_params"] = dict(HFMG_PARAMS)
        with open(config, "w") as f:
            json.dump(cfg, f, indent=4)
    times["config_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with quiet():
        # Its trials reuse create_quant_config's export (same settings).
        amct.accuracy_based_auto_calibration(model, Evaluator(), config, record, prefix, batches[0],
                                             input_names=workload.input_names, output_names=workload.output_names,
                                             dynamic_axes=workload.dynamic_axes)
    times["auto_calibration_s"] = time.perf_counter() - start
    artifacts = {"fake-quant": prefix + "_fake_quant_model.onnx"}
    qdq = prefix + "_qdq_model.onnx"
    if os.path.exists(qdq):
        artifacts["qdq"] = qdq
    with open(os.path.join(work, "out", "accuracy_based_auto_calibration_ranking_information.json")) as f:
        ranking = json.load(f)
    final_path = os.path.join(work, "out", "accuracy_based_auto_calibration_final_config.json")
    with open(final_path if os.path.exists(final_path) else config) as f:
        final = json.load(f)
    rolled_back = [layer for layer, _ in ranking if not final[layer]["quant_enable"]]
    # metric_eval's first call compares the float model with itself.
    info = {"quantized_layers": len(ranking) - len(rolled_back), "rolled_back": rolled_back,
            "evaluations": len(trials) - 1, "validation_agreement": trials[1:]}
    return artifacts, times, info


class _Reader:
    def __init__(self, batches, names):
        self._feeds = iter([{n: t.numpy() for n, t in zip(names, b)} for b in batches])

    def get_next(self):
        return next(self._feeds, None)


def _ort(model, batches, workload, work, method):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static

    class Reader(_Reader, CalibrationDataReader):
        pass

    times = {}
    start = time.perf_counter()
    float_path = export_float_onnx(model, batches[0], os.path.join(work, "float.onnx"), workload)
    times["export_s"] = time.perf_counter() - start
    out = os.path.join(work, f"{workload.name}_ort_{method}.onnx")
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    start = time.perf_counter()
    with quiet():
        # onnxruntime's recommended CPU setting: uint8 activations, int8 per-channel weights, QDQ
        quantize_static(float_path, out, Reader(batches, workload.input_names), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, op_types_to_quantize=workload.ort_op_types)
    times["quantize_static_s"] = time.perf_counter() - start
    return {"qdq": out}, times, {}


def _pt2e(model, batches, workload, work):
    with quiet():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    times = {}
    start = time.perf_counter()
    with quiet():
        dyn = workload.dynamic_shapes()
        kwargs = {}
        if dyn is not None:
            kwargs["dynamic_shapes"] = tuple(dyn[n] for n in workload.input_names)
        exported = torch.export.export(model, batches[0], **kwargs).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
    times["prepare_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)
    times["forward_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with quiet():
        converted = convert_pt2e(prepared)
    times["convert_s"] = time.perf_counter() - start
    return {"torch": converted}, times, {}


def preload(tool):
    """Imports a tool's modules outside the timed calibration (a one-off process cost)."""
    with quiet():
        if tool.startswith("amct-"):
            import amct_pytorch  # noqa: F401
        if tool.startswith("ort-"):
            import onnxruntime.quantization  # noqa: F401
        if tool.startswith("ort-") or tool.startswith("amct-"):
            import onnxscript  # noqa: F401
            import torch.onnx  # noqa: F401
        if tool == "pt2e-x86":
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401


def calibrate(tool, model, batches, workload, work):
    os.makedirs(work, exist_ok=True)
    if tool in AUTO_TOOLS:
        return _amct_auto(model, batches, workload, work, "hfmg" if tool == "amct-auto-hfmg" else "ifmr")
    if tool.startswith("amct-"):
        return _amct(model, batches, workload, work, amct_variant(tool))
    if tool.startswith("ort-"):
        return _ort(model, batches, workload, work, tool.split("-")[1])
    if tool == "pt2e-x86":
        return _pt2e(model, batches, workload, work)
    raise ValueError(f"unknown tool {tool}")


def tool_unavailable(tool):
    import importlib.util

    if tool.startswith("amct-") and importlib.util.find_spec("amct_pytorch") is None:
        return "amct_pytorch is not installed"
    if tool.startswith("ort-") and importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    if tool == "pt2e-x86":
        if importlib.util.find_spec("torchao") is None:
            return ("torch 2.13 no longer ships torch.ao.quantization.quantize_pt2e (PT2E moved to the torchao "
                    "package) and torchao is not installed (make bench installs it)")
    return None


def run_outputs(artifact, feeds, names, threads=2):
    """Outputs of an artifact (ONNX path or torch module) over feeds, concatenated."""
    if isinstance(artifact, torch.nn.Module):
        outs = []
        with torch.no_grad():
            for feed in feeds:
                outs.append(artifact(*[torch.from_numpy(feed[n]) for n in names]).numpy())
        return np.concatenate(outs)
    session = ort_session(artifact, threads)
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def ort_session(path, threads=2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def latencies_ms(paths, feed, threads=2, rounds=5, budget_s=2.0):
    """Median wall time (ms) of one onnxruntime run per model. The models are
    run in interleaved rounds (each round runs every model for budget_s /
    rounds seconds), so that a change in background load hits all of them alike."""
    sessions = {}
    errors = {}
    for key, path in paths.items():
        try:
            sessions[key] = ort_session(path, threads)
            for _ in range(2):
                sessions[key].run(None, feed)
        except Exception as error:
            errors[key] = f"{type(error).__name__}: {error}"[:500]
    samples = {key: [] for key in sessions}
    per_model = budget_s / rounds
    for _ in range(rounds):
        for key, session in sessions.items():
            start = time.perf_counter()
            while True:
                t = time.perf_counter()
                session.run(None, feed)
                samples[key].append(time.perf_counter() - t)
                if time.perf_counter() - start > per_model and len(samples[key]) >= 2:
                    break
    return {key: 1000.0 * float(np.median(v)) for key, v in samples.items()}, errors
