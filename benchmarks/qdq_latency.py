"""ONNX Runtime CPU latency: float model vs amct's full-INT8 QDQ model vs its
layer-only QDQ model (qdq_mode="layers") vs the QDQ model
onnxruntime.quantization.quantize_static (QDQ, per-channel) makes from the
same float ONNX, at batch 1 and 8, on the benchmark workloads (Fashion-MNIST
CNN, EfficientNet-Lite0, all-MiniLM-L6-v2) and on torchvision-style
MobileNetV3-Large, EfficientNet-B0 and ResNet-50 built from plain modules
below (random weights, 224x224 inputs); then MiniLM's mean cosine (float vs
full-INT8 QDQ) without and with quantize_activation_matmuls.

    python3 benchmarks/qdq_latency.py [--runs N] [--threads T] [--only TITLES] [--skip-cosine] [--json PATH]

Both QDQ models use 8-bit activations calibrated on the same batches;
quantize_static gets per-channel INT8 weights and ONNX Runtime's recommended
quant_pre_process first (BatchNorm folding, shape inference). The float model
is exported with the same exporter amct uses (torch.onnx.export(dynamo=True),
with its graph optimizer, which amct turns off to keep its node names);
ONNX Runtime fuses its BatchNorms at load time. Each latency is the median of
--runs timed runs after warm-up, one session per model with --threads
intra-op threads that do not spin between runs; the four models take turns
in blocks of 5 runs, so that a slow spell of the machine hits them alike. A workload whose packages or data are
missing is skipped (make bench installs them). --json also writes the rows to
a JSON file, which bench_ptq.py --side-results puts into RESULTS.md (make
bench does).
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

import amct_pytorch as amct  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common.files import write_text_atomically  # noqa: E402
from bench_common.workloads import EfficientNetLite0, Fashion, MiniLM  # noqa: E402


def _bn(channels):
    return nn.BatchNorm2d(channels)


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), _bn(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


def _divisible(value, divisor=8):
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool, 1x1 conv, activation, 1x1 conv, gate, Mul."""

    def __init__(self, channels, squeeze, act, gate):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV3's and EfficientNet's block: expand, depthwise, squeeze-excite, project, residual Add."""

    def __init__(self, cin, kernel, expanded, cout, se, act, stride, se_channels, gate):
        super().__init__()
        layers = [] if expanded == cin else [_conv_bn(cin, expanded, 1, act=act)]
        layers.append(_conv_bn(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, se_channels, nn.ReLU if gate is nn.Hardsigmoid else nn.SiLU, gate))
        layers.append(_conv_bn(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Large(nn.Module):
    """torchvision.models.mobilenet_v3_large's layout and arithmetic, from plain modules."""

    CONFIG = [(16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
              (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
              (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
              (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
              (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1)]

    def __init__(self):
        super().__init__()
        layers = [_conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
        for cin, k, exp, cout, se, act, stride in self.CONFIG:
            layers.append(InvertedResidual(cin, k, exp, cout, se, nn.ReLU if act == "RE" else nn.Hardswish, stride,
                                           _divisible(exp // 4), nn.Hardsigmoid))
        layers.append(_conv_bn(160, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class EfficientNetB0(nn.Module):
    """torchvision.models.efficientnet_b0's layout and arithmetic (eval mode), from plain modules."""

    CONFIG = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]

    def __init__(self):
        super().__init__()
        layers = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)]
        for ratio, k, stride, cin, cout, repeats in self.CONFIG:
            for i in range(repeats):
                c = cin if i == 0 else cout
                layers.append(InvertedResidual(c, k, c * ratio, cout, True, nn.SiLU, stride if i == 0 else 1,
                                               max(1, c // 4), nn.Sigmoid))
        layers.append(_conv_bn(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, 1000)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, width, 1, act=nn.ReLU), _conv_bn(width, width, 3, stride, act=nn.ReLU),
                                  _conv_bn(width, width * 4, 1))
        self.down = _conv_bn(cin, width * 4, 1, stride) if stride != 1 or cin != width * 4 else None

    def forward(self, x):
        return F.relu(self.body(x) + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    """torchvision.models.resnet50's layout and arithmetic, from plain modules."""

    def __init__(self):
        super().__init__()
        layers, cin = [_conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def random_eval_model(cls):
    """Random weights with BatchNorm statistics that keep activations in range."""
    torch.manual_seed(0)
    model = cls().eval()
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


class _Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def build_models(name, model, calib_inputs, input_names, dynamic_axes, workdir, activation_matmuls=False,
                 output_names=("output",)):
    """Paths: float ONNX, amct full-INT8 QDQ, amct layer-only QDQ, quantize_static QDQ."""
    sample = calib_inputs[0]
    base = os.path.join(workdir, name)
    float_path = base + "_float.onnx"
    with _quiet():
        # The exporter's default graph optimizer stays on: the float model and
        # quantize_static's input are what an ONNX Runtime user would export
        # (without it EfficientNet-Lite0's float model ran 3.8x slower).
        torch.onnx.export(model, sample, float_path, input_names=input_names, output_names=list(output_names),
                          dynamic_axes=dynamic_axes, dynamo=True, external_data=False)
        amct.create_quant_config(base + "_config.json", model, sample, batch_num=len(calib_inputs))
        if activation_matmuls:
            with open(base + "_config.json", encoding="utf-8") as f:
                config = json.load(f)
            config["quantize_activation_matmuls"] = True
            with open(base + "_config.json", "w", encoding="utf-8") as f:
                json.dump(config, f)
        calib = amct.quantize_model(base + "_config.json", base + "_modified.onnx", base + "_record.txt", model, sample,
                                    input_names=input_names, output_names=list(output_names), dynamic_axes=dynamic_axes,
                                    full_int8_qdq=True)
        with torch.no_grad():
            for batch in calib_inputs:
                calib(*batch) if isinstance(batch, tuple) else calib(batch)
    amct.save_model(base + "_modified.onnx", base + "_record.txt", base, outputs=("qdq",))
    amct.save_model(base + "_modified.onnx", base + "_record.txt", base + "_layers", outputs=("qdq",),
                    qdq_mode="layers")
    feeds = [dict(zip(input_names, [t.numpy() for t in (b if isinstance(b, tuple) else (b,))])) for b in calib_inputs]
    static_path = base + "_quantize_static.onnx"
    with _quiet():
        # ONNX Runtime's recommended preparation (BatchNorm folding, shapes); its symbolic shape
        # inference cannot read the Constant nodes of the dynamo exporter, ONNX shape inference runs instead.
        quant_pre_process(float_path, base + "_float_prepared.onnx", skip_symbolic_shape=True)
        quantize_static(base + "_float_prepared.onnx", static_path, _Reader(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return float_path, base + "_qdq_model.onnx", base + "_layers_qdq_model.onnx", static_path


def latencies_ms(paths, feed, threads, runs, block=5):
    """Median latency of each model over `runs` timed runs, taken in rounds
    of `block` runs per model so that a slow spell of the machine hits all
    models alike, each block after an untimed run. The worker threads do not
    spin between runs: ONNX Runtime's spinning workers of one session kept
    the cores busy through the next session's block, which made the model
    timed after the float model up to 2.7x slower at batch 1 (EfficientNet-
    Lite0: float 8.7 ms spinning, 3.2 ms not; each model alone in its own
    process agrees with the non-spinning figures)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in paths]
    for session in sessions:
        for _ in range(3):
            session.run(None, feed)
    times = [[] for _ in sessions]
    while len(times[0]) < runs:
        for session, samples in zip(sessions, times):
            session.run(None, feed)
            for _ in range(min(block, runs - len(samples))):
                start = time.perf_counter()
                session.run(None, feed)
                samples.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(samples) for samples in times]


def _batched(feed, batch):
    """`feed` repeated or cut along dim 0 to `batch` rows."""
    out = {}
    for key, value in feed.items():
        reps = -(-batch // value.shape[0])
        out[key] = np.concatenate([value] * reps)[:batch]
    return out


def workload_case(cls):
    def case(workdir):
        workload = cls()
        reason = workload.unavailable()
        if reason:
            return None, reason
        model = workload.model(log=lambda *_: None)
        calib = workload.calib_batches(4)
        paths = build_models(workload.name, model, calib, workload.input_names, workload.dynamic_axes, workdir,
                             output_names=workload.output_names)
        feed = workload.latency_input()
        return paths, {b: _batched(feed, b) for b in (1, 8)}
    return case


def plain_case(cls, size=224):
    def case(workdir):
        gen = torch.Generator().manual_seed(1)
        calib = [torch.randn(4, 3, size, size, generator=gen) for _ in range(2)]
        paths = build_models(cls.__name__, random_eval_model(cls), calib, ["input"],
                             {"input": {0: "batch"}, "output": {0: "batch"}}, workdir)
        return paths, {b: {"input": torch.randn(b, 3, size, size, generator=gen).numpy()} for b in (1, 8)}
    return case


def minilm_matmul_cosines(workdir, feeds=8):
    """MiniLM mean cosine (float vs full-INT8 QDQ in ONNX Runtime) without and with the attention MatMuls."""
    workload = MiniLM()
    if workload.unavailable():
        return None
    model = workload.model(log=lambda *_: None)
    calib = workload.calib_batches(4)
    inputs = workload.eval_inputs()[:feeds]
    out = {}
    for label, flag in (("without", False), ("with", True)):
        paths = build_models(f"minilm_{label}", model, calib, workload.input_names, workload.dynamic_axes, workdir,
                             activation_matmuls=flag, output_names=workload.output_names)
        sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (paths[0], paths[1])]
        float_out, int8_out = (np.concatenate([s.run(None, f)[0] for f in inputs]) for s in sessions)
        cos = (float_out * int8_out).sum(1) / np.linalg.norm(float_out, axis=1) / np.linalg.norm(int8_out, axis=1)
        out[label] = float(cos.mean())
    return out


CASES = [("Fashion-MNIST CNN", workload_case(Fashion)), ("EfficientNet-Lite0", workload_case(EfficientNetLite0)),
         ("all-MiniLM-L6-v2 seq 64", workload_case(MiniLM)), ("MobileNetV3-Large", plain_case(MobileNetV3Large)),
         ("EfficientNet-B0", plain_case(EfficientNetB0)), ("ResNet-50", plain_case(ResNet50))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", help="comma-separated case titles to run")
    parser.add_argument("--skip-cosine", action="store_true", help="skip the MiniLM attention-MatMul accuracy run")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")
    args = parser.parse_args()
    heading = f"ONNX Runtime {ort.__version__}, CPU, {args.threads} threads, median of {args.runs} runs"
    print(heading)
    print(f"{'model':<26}{'batch':>6}{'float ms':>10}{'full ms':>9}{'layers ms':>10}{'static ms':>10}"
          f"{'full/static':>12}{'full/float':>11}{'layers/float':>13}{'static/float':>13}", flush=True)
    out = {"kind": "qdq_latency", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "onnxruntime": ort.__version__,
           "threads": args.threads, "runs": args.runs, "rows": [], "skipped": {}}
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory() as workdir:
        for title, case in CASES:
            if only and title not in only:
                continue
            paths, feeds = case(workdir)
            if paths is None:
                print(f"{title:<26} skipped: {feeds}", flush=True)
                out["skipped"][title] = str(feeds)
                continue
            for b, feed in feeds.items():
                f, o, layer, s = latencies_ms(paths, feed, args.threads, args.runs)
                print(f"{title:<26}{b:>6}{f:>10.2f}{o:>9.2f}{layer:>10.2f}{s:>10.2f}{o / s:>12.3f}{o / f:>11.3f}"
                      f"{layer / f:>13.3f}{s / f:>13.3f}", flush=True)
                out["rows"].append({"model": title, "batch": b, "float_ms": f, "full_ms": o, "layers_ms": layer,
                                    "static_ms": s})
        if not args.skip_cosine:
            cosines = minilm_matmul_cosines(workdir)
            if cosines:
                print(f"MiniLM mean cosine, full-INT8 QDQ: {cosines['without']:.4f} without the attention MatMuls, "
                      f"{cosines['with']:.4f} with them (quantize_activation_matmuls)", flush=True)
                out["minilm_cosines"] = cosines
    if args.json:
        write_text_atomically(args.json, json.dumps(out, indent=1))



if __name__ == "__main__":
    main()
