"""Which storage of 4-bit weights ONNX Runtime runs fastest in a QDQ model.

    python3 benchmarks/int4_qdq_latency.py [--runs N] [--threads T] [--batch B]

One small CNN (Conv 16->32, Conv 32->64 stride 2, Conv 64->64, each + Relu,
GlobalAveragePool, Gemm 64->10, on 16x32x32 inputs) with weights already on
the INT4 grid [-8, 7], written three ways that compute the same numbers:

- int8: the integers in INT8 initializers read through DequantizeLinear
  (what save_model writes for INT4 weights; opset 21);
- int4: the same integers in native INT4 initializers (opset 21);
- float: the dequantized weights as FLOAT initializers, activations still
  quantized.

Activations are quantized to UINT8 in front of every layer as in amct's QDQ
model (zero point 0 after a Relu, as a calibrated Relu output gets).
For each model the script prints the median latency over --runs timed runs
after warm-up and how far its output is from the graph's own numbers (the
int8 model run with every ONNX Runtime optimization off).
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
LAYERS = [(16, 32, 1), (32, 64, 2), (64, 64, 1)]  # (cin, cout, stride) of the 3x3 convs


def _tensor(name, array, data_type=None):
    if data_type == TensorProto.INT4:
        return helper.make_tensor(name, TensorProto.INT4, array.shape, array.astype(np.int8).ravel().tolist())
    return numpy_helper.from_array(array, name)


class _Builder:
    def __init__(self, form, rng):
        self.form, self.rng = form, rng
        self.nodes, self.inits = [], []

    def quant(self, x, name, scale, zero_point):
        self.inits += [_tensor(f"{name}.s", np.array(scale, np.float32)),
                       _tensor(f"{name}.z", np.array(zero_point, np.uint8))]
        self.nodes.append(helper.make_node("QuantizeLinear", [x, f"{name}.s", f"{name}.z"], [f"{name}.q"]))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"], [f"{name}.dq"]))
        return f"{name}.dq"

    def weight(self, name, integers, scales, axis):
        shape = [1] * integers.ndim
        shape[axis] = -1
        if self.form == "float":
            self.inits.append(_tensor(name, (integers * scales.reshape(shape)).astype(np.float32)))
            return name
        storage = TensorProto.INT4 if self.form == "int4" else None
        zero = np.zeros(len(scales), np.int8)
        self.inits += [_tensor(f"{name}.q", integers, storage), _tensor(f"{name}.s", scales),
                       _tensor(f"{name}.z", zero, storage)]
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"], [name],
                                           axis=axis))
        return name

    def bias(self, name, integers, scales):
        if self.form == "float":
            self.inits.append(_tensor(name, (integers * scales).astype(np.float32)))
            return name
        self.inits += [_tensor(f"{name}.q", integers), _tensor(f"{name}.s", scales),
                       _tensor(f"{name}.z", np.zeros(len(scales), np.int32))]
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"], [name], axis=0))
        return name


def build(form, seed=0):
    """The CNN in `form`; the same seed gives the same integers in every form."""
    rng = np.random.default_rng(seed)
    b = _Builder(form, rng)
    x, act_scale = "input", 0.02
    for i, (cin, cout, stride) in enumerate(LAYERS):
        # A Relu output calibrates to offset_d -128, zero point 0 on UINT8,
        # which lets ONNX Runtime drop the Relu and fuse QLinearConv.
        xq = b.quant(x, f"conv{i}.in", act_scale, 128 if i == 0 else 0)
        wq = rng.integers(-8, 8, size=(cout, cin, 3, 3)).astype(np.int8)
        sw = rng.uniform(0.01, 0.03, size=cout).astype(np.float32)
        bq = rng.integers(-2000, 2000, size=cout).astype(np.int32)
        deq = (sw * np.float32(act_scale)).astype(np.float32)
        w = b.weight(f"conv{i}.w", wq, sw, 0)
        bias = b.bias(f"conv{i}.b", bq, deq)
        b.nodes.append(helper.make_node("Conv", [xq, w, bias], [f"conv{i}.y"], pads=[1, 1, 1, 1],
                                        strides=[stride, stride]))
        b.nodes.append(helper.make_node("Relu", [f"conv{i}.y"], [f"conv{i}.r"]))
        x, act_scale = f"conv{i}.r", act_scale * 2
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    b.nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    xq = b.quant("flat", "fc.in", act_scale, 0)
    wq = rng.integers(-8, 8, size=(LAYERS[-1][1], 10)).astype(np.int8)
    sw = np.full(1, 0.02, np.float32)
    w = b.weight("fc.w", wq, sw, 0)
    b.inits.append(_tensor("fc.b", np.zeros(10, np.float32)))
    b.nodes.append(helper.make_node("Gemm", [xq, w, "fc.b"], ["output"]))
    graph = helper.make_graph(
        b.nodes, "int4_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def latency_ms(path, feed, threads, runs, optimize=True):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    output = session.run(None, feed)[0]
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), output


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    feed = {"input": np.random.default_rng(1).standard_normal((args.batch, 16, 32, 32)).astype(np.float32)}
    print(f"ONNX Runtime {ort.__version__}, CPU, {args.threads} threads, batch {args.batch}, "
          f"median of {args.runs} runs")
    with tempfile.TemporaryDirectory() as workdir:
        for form in ("int8", "int4", "float"):
            path = os.path.join(workdir, f"{form}.onnx")
            onnx.save(build(form), path)
            if form == "int8":
                # The graph as written, without ONNX Runtime's rewrites: the numbers all three describe.
                _, reference = latency_ms(path, feed, args.threads, 1, optimize=False)
            ms, output = latency_ms(path, feed, args.threads, args.runs)
            diff = float(np.max(np.abs(output - reference)))
            print(f"  {form:6s} weights: {ms:8.3f} ms   file {os.path.getsize(path) / 1024:7.1f} KB   "
                  f"max |output - unoptimized| {diff:.3g} (output range {float(np.ptp(reference)):.3g})")


if __name__ == "__main__":
    main()
