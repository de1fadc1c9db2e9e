"""Small models used by the tests: the layer mix of the spec's example, a
ResNet-style network, and models that stress the module-name mapping."""

import torch
from torch import nn
import torch.nn.functional as F


def _randomize_batchnorm(model, seed):
    """Trained-looking BatchNorm statistics (fresh ones are identity)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)
    return model


class SpecNet(nn.Module):
    """Conv2d+BN+ReLU -> depthwise Conv2d -> ConvTranspose2d -> AvgPool2d -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.deconv = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        x = self.relu(self.bn(self.conv1(x)))
        x = self.deconv(self.dw(x))
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


def spec_net(seed=0):
    torch.manual_seed(seed)
    return _randomize_batchnorm(SpecNet(), seed).eval()


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return _randomize_batchnorm(TinyResNet(), seed).eval()


class MappingNet(nn.Module):
    """Nested Sequential names, a module called twice, functional ops between
    modules, a Linear on 3-D input (MatMul) and fresh BatchNorms."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
        self.shared = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 6)

    def forward(self, x):
        x = self.features(x)
        x = self.shared(x) * 0.5
        x = self.shared(torch.sigmoid(x))
        x = x.mean(dim=(2, 3)).unsqueeze(1).repeat(1, 3, 1)
        return self.head(x)
