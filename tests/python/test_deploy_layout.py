"""The deploy model of the spec's example network holds exactly the nodes,
initializers, types and attributes of docs/amct-reference.md#deploy-model."""

import numpy as np
import onnx
from onnx import numpy_helper

import amct_pytorch  # noqa: F401  (the fixture builds the models)
from record_proto import read_record


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_specnet_deploy_nodes(quantized):
    if not quantized.save_path.endswith("specnet"):
        return
    model = onnx.load(quantized.deploy)
    graph = model.graph
    quant_ops = [(n.op_type, n.name) for n in graph.node if n.op_type not in ("Reshape", "Concat", "Constant", "Shape",
                                                                                "Squeeze", "Gather", "Unsqueeze",
                                                                                "Slice", "Cast")]
    assert quant_ops == [
        ("AscendQuant", "conv1.quant"), ("Conv", "conv1"), ("AscendDequant", "conv1.dequant"), ("Relu", "relu"),
        ("AscendQuant", "dw.quant"), ("Conv", "dw"), ("AscendDequant", "dw.dequant"),
        ("AscendQuant", "deconv.quant"), ("ConvTranspose", "deconv"), ("AscendDequant", "deconv.dequant"),
        ("AscendQuant", "pool.quant"), ("AveragePool", "pool"), ("AscendDequant", "pool.dequant"),
        ("AscendQuant", "fc.quant"), ("Gemm", "fc"), ("AscendDequant", "fc.dequant"),
    ]
    nodes = {n.name: n for n in graph.node}
    inits = {t.name: t for t in graph.initializer}
    records = read_record(quantized.record)
    T = onnx.TensorProto
    expected_weights = {"conv1": ([8, 3, 3, 3], True), "dw": ([8, 1, 3, 3], False), "deconv": ([8, 4, 2, 2], True),
                        "fc": ([256, 10], True)}
    for layer, (dims, has_bias) in expected_weights.items():
        node = nodes[layer]
        weight = inits[node.input[1]]
        assert weight.data_type == T.INT8 and list(weight.dims) == dims, layer
        if has_bias:
            bias = inits[node.input[2]]
            assert bias.data_type == T.INT32 and len(bias.int32_data) == bias.dims[0], layer
        else:
            assert len(node.input) == 2 or node.input[2] == "", layer
    assert _attrs(nodes["fc"]).get("transB", 0) == 0
    assert nodes["dw"].input[0] == "dw.quant.output0" or nodes["dw"].input[0].startswith("dw.quant")
    assert _attrs(nodes["dw"])["group"] == 8
    for layer, rec in records.items():
        quant, dequant = nodes[f"{layer}.quant"], nodes[f"{layer}.dequant"]
        attrs = _attrs(quant)
        assert set(attrs) == {"scale", "offset", "dst_type"}
        assert np.float32(attrs["scale"]) == np.float32(1.0 / np.float64(np.float32(rec.scale_d)))
        assert attrs["offset"] == rec.offset_d and attrs["dst_type"] == b"INT8"
        assert _attrs(dequant) == {"dtype": 0}
        param = inits[f"{layer}.dequant.param"]
        assert param.data_type == T.UINT64 and list(param.dims) == [len(rec.scale_w)]
        deq = (np.asarray(rec.scale_w, np.float32) * np.float32(rec.scale_d)).astype(np.float32)
        assert list(param.uint64_data) == [int(v) for v in deq.view(np.uint32)]
        assert not quant.domain and not dequant.domain
    assert [o.name for o in graph.output] == ["output"]
    assert nodes["fc.dequant"].output[0] == "output"
    assert not any(a.name == "op_data_type" for n in graph.node for a in n.attribute)
    assert numpy_helper.to_array(inits["conv1.dequant.param"]).dtype == np.uint64
