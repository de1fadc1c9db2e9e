"""End-to-end demo: train a small CNN on Fashion-MNIST (real data from the
Debian package dataset-fashion-mnist), quantize it to INT8 with amct's
AMCT-compatible API, and compare float vs INT8 accuracy and model size.

Run with `make demo`. The trained weights are cached in .cache/ so a second
run only quantizes."""

import gzip
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import amct_pytorch as amct

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "fashion_cnn.pt")


def load_idx(name):
    with gzip.open(os.path.join(DATA_DIR, name), "rb") as f:
        data = f.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


def to_tensor(images):
    return (torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.2860) / 0.3530


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 1)
        self.bn3 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn4 = nn.BatchNorm2d(64)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(x))))))
        x = self.pool(x)
        x = x + torch.relu(self.bn4(self.conv4(x)))
        x = self.avg(x)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def train(model, images, labels, epochs=2):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images), 128):
            idx = order[start:start + 128]
            optimizer.zero_grad()
            loss = loss_fn(model(images[idx]), labels[idx])
            loss.backward()
            optimizer.step()
        print(f"  epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f}", flush=True)
    return model.eval()


def accuracy_ort(path, images, labels):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(images), 500):
        logits = session.run(None, {name: images[start:start + 500].numpy()})[0]
        correct += int((logits.argmax(1) == labels[start:start + 500].numpy()).sum())
    return correct / len(images)


def main():
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    if not os.path.isdir(DATA_DIR):
        sys.exit(f"{DATA_DIR} is missing: install the Debian package dataset-fashion-mnist")
    torch.set_num_threads(os.cpu_count() or 1)
    train_x, train_y = to_tensor(load_idx("train-images-idx3-ubyte.gz")), torch.from_numpy(
        load_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    test_x, test_y = to_tensor(load_idx("t10k-images-idx3-ubyte.gz")), torch.from_numpy(
        load_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))

    model = FashionCNN()
    if os.path.exists(CACHE):
        model.load_state_dict(torch.load(CACHE))
        model.eval()
        print(f"loaded cached weights from {os.path.normpath(CACHE)}")
    else:
        print("training FashionCNN on 60,000 Fashion-MNIST images (cached afterwards)")
        start = time.time()
        train(model, train_x, train_y)
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        torch.save(model.state_dict(), CACHE)
        print(f"  trained in {time.time() - start:.0f} s")

    work = tempfile.mkdtemp(prefix="amct_demo_")
    config = os.path.join(work, "config.json")
    modified = os.path.join(work, "modified_model.onnx")
    record = os.path.join(work, "scale_offset_record.txt")
    save_path = os.path.join(work, "results", "fashion_cnn")
    batch_num = 4
    calib = [train_x[i * 128:(i + 1) * 128] for i in range(batch_num)]

    start = time.time()
    amct.create_quant_config(config, model, calib[0], batch_num=batch_num)
    calib_model = amct.quantize_model(config, modified, record, model, calib[0], input_names=["input"],
                                      output_names=["output"], dynamic_axes={"input": {0: "batch"},
                                                                             "output": {0: "batch"}})
    with torch.no_grad():
        for batch in calib:
            calib_model(batch)
    amct.save_model(modified, record, save_path)
    print(f"quantized in {time.time() - start:.1f} s ({batch_num} calibration batches of 128 images)")

    float_onnx = os.path.join(work, "float_model.onnx")
    torch.onnx.export(model, (calib[0],), float_onnx, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=True, verbose=False,
                      external_data=False)
    fake_quant = save_path + "_fake_quant_model.onnx"
    deploy = save_path + "_deploy_model.onnx"
    qdq = save_path + "_qdq_model.onnx"
    float_acc = accuracy_ort(float_onnx, test_x, test_y)
    int8_acc = accuracy_ort(fake_quant, test_x, test_y)
    qdq_acc = accuracy_ort(qdq, test_x, test_y)

    def size_kb(path):
        return os.path.getsize(path) / 1024

    print()
    print(f"{'model':<34}{'top-1 (10,000 test images)':>28}{'size':>12}")
    print(f"{'float (ONNX)':<34}{float_acc * 100:>27.2f}%{size_kb(float_onnx):>9.0f} KB")
    print(f"{'INT8 fake-quant (ONNX Runtime)':<34}{int8_acc * 100:>27.2f}%{size_kb(fake_quant):>9.0f} KB")
    print(f"{'INT8 QDQ (ORT integer kernels)':<34}{qdq_acc * 100:>27.2f}%{size_kb(qdq):>9.0f} KB")
    print(f"{'INT8 deploy (AscendQuant, int8 W)':<34}{'(Ascend only)':>28}{size_kb(deploy):>9.0f} KB")
    print(f"\naccuracy change: {(int8_acc - float_acc) * 100:+.2f} points; outputs in {work}")


if __name__ == "__main__":
    main()
