import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

from models import spec_net, tiny_resnet  # noqa: E402

import amct_pytorch as amct  # noqa: E402

SPEC_FUSE = [("conv1", "bn")]
RESNET_FUSE = [("stem.0", "stem.1"), ("layer1.0.conv1", "layer1.0.bn1"), ("layer1.0.conv2", "layer1.0.bn2"),
               ("layer1.1.conv1", "layer1.1.bn1"), ("layer1.1.conv2", "layer1.1.bn2"),
               ("layer2.0.conv1", "layer2.0.bn1"), ("layer2.0.conv2", "layer2.0.bn2"),
               ("layer2.0.downsample.0", "layer2.0.downsample.1")]
MODELS = {
    "specnet": (spec_net, (3, 8, 8), SPEC_FUSE),
    "resnet": (tiny_resnet, (3, 16, 16), RESNET_FUSE),
}


class Quantized:
    """Outputs of the full flow for one model."""

    def __init__(self, name, root):
        factory, shape, self.fuse = MODELS[name]
        self.model = factory()
        self.shape = shape
        self.config = str(root / "config.json")
        self.modified = str(root / "modified.onnx")
        self.record = str(root / "record.txt")
        self.save_path = str(root / "out" / name)
        gen = torch.Generator().manual_seed(1)
        self.calib_batches = [torch.randn(4, *shape, generator=gen) for _ in range(2)]
        self.test_input = torch.randn(6, *shape, generator=gen)
        sample = self.calib_batches[0]
        amct.create_quant_config(self.config, self.model, sample, batch_num=2)
        self.calib_model = amct.quantize_model(
            self.config, self.modified, self.record, self.model, sample,
            input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        with torch.no_grad():
            for batch in self.calib_batches:
                self.calib_model(batch)
        amct.save_model(self.modified, self.record, self.save_path)
        self.fake_quant = self.save_path + "_fake_quant_model.onnx"
        self.deploy = self.save_path + "_deploy_model.onnx"
        self.qdq = self.save_path + "_qdq_model.onnx"


@pytest.fixture(scope="module", params=sorted(MODELS))
def quantized(request, tmp_path_factory):
    return Quantized(request.param, tmp_path_factory.mktemp(request.param))
