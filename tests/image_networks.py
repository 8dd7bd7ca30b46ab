"""Common image and sequence networks, laid out as their reference libraries.

torchvision is not a test dependency, so its ResNet-18 and VGG-11 are rebuilt
here layer for layer, with the same module names and nesting (``layer1.0.conv1``,
``layer2.0.downsample.0``, ``features.0``, ``classifier.6``) and the same forward
(in-place ReLUs, ``out += identity``, ``torch.flatten(x, 1)``). The PreResNet
follows the pre-activation ResNet of the SWAG papers' code (Maddox et al.,
2019). Widths and depths are parameters, so that the tests can also run
narrow copies of the same layouts quickly.
"""

import math

import torch
from torch import nn

# -- ResNet (torchvision.models.resnet) ---------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: conv-BN-ReLU-conv-BN, the shortcut added, ReLU.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels.
    stride : int, default=1
        Stride of the first convolution.
    downsample : torch.nn.Module or None, default=None
        The shortcut (a 1x1 convolution and a BatchNorm) where the shape changes;
        None for the identity.
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def stage(block, inplanes, planes, blocks, stride, norm):
    """``blocks`` residual blocks, the first with a 1x1-convolution shortcut
    (and a BatchNorm after it with ``norm``) where the shape changes."""
    downsample = None
    if stride != 1 or inplanes != planes:
        shortcut = [nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)]
        downsample = nn.Sequential(*shortcut, *([nn.BatchNorm2d(planes)] * norm))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with ``BasicBlock`` (ResNet-18 with the defaults).

    The stem is a 7x7 convolution of stride 2, BatchNorm, ReLU and
    ``MaxPool2d(3, 2, 1)``; four stages of ``layers`` blocks double the width
    and halve the resolution; ``AdaptiveAvgPool2d((1, 1))``, ``torch.flatten``
    and a linear layer end it. Initialised as torchvision does (Kaiming normal
    convolutions, BatchNorm at one and zero).

    Parameters
    ----------
    layers : sequence of int, default=(2, 2, 2, 2)
        Blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18.
    num_classes : int, default=10
        Outputs of the last layer.
    width : int, default=64
        Channels of the stem and the first stage (torchvision: 64).
    """

    def __init__(self, layers=(2, 2, 2, 2), num_classes=10, width=64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        layer = stage(BasicBlock, self.inplanes, planes, blocks, stride, True)
        self.inplanes = planes
        return layer

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet18(num_classes=10, width=64):
    """ResNet-18 as ``torchvision.models.resnet18(num_classes=num_classes)``."""
    return ResNet((2, 2, 2, 2), num_classes, width)


# -- VGG (torchvision.models.vgg) ----------------------------------------------------

#: Configuration "A" (VGG-11): channels of each convolution, "M" a max-pooling.
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """torchvision's ``VGG``: ``features``, ``AdaptiveAvgPool2d``, ``classifier``.

    Parameters
    ----------
    cfg : sequence of int or "M", default=VGG11
        Channels of each 3x3 convolution (padding 1, in-place ReLU after it,
        BatchNorm between with ``batch_norm``); "M" is ``MaxPool2d(2, 2)``.
    num_classes : int, default=10
        Outputs of the last layer.
    batch_norm : bool, default=False
        Whether a BatchNorm follows each convolution (``vgg11_bn``).
    hidden : int, default=4096
        Width of the two hidden linear layers.
    pool : int, default=7
        Output side of the adaptive average pooling.
    scale : int, default=1
        Divides every width of ``cfg``, for narrow copies of the layout.
    """

    def __init__(
        self,
        cfg=VGG11,
        num_classes=10,
        batch_norm=False,
        hidden=4096,
        pool=7,
        scale=1,
    ):
        super().__init__()
        layers = []
        channels = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            v //= scale
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def vgg11(num_classes=10):
    """VGG-11 as ``torchvision.models.vgg11(num_classes=num_classes)``."""
    return VGG(VGG11, num_classes)


def small_vgg11_bn(num_classes=10):
    """``vgg11_bn``'s layout with every width divided by 16, 64 hidden units and
    a 2x2 adaptive pooling: the same operations at a fraction of the cost."""
    return VGG(VGG11, num_classes, batch_norm=True, hidden=64, pool=2, scale=16)


# -- PreResNet (the SWAG papers' code) ------------------------------------------------


class PreActBlock(nn.Module):
    """A pre-activation basic block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, shortcut added.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels.
    stride : int, default=1
        Stride of the first convolution.
    downsample : torch.nn.Module or None, default=None
        A 1x1 convolution on the block's input where the shape changes.
    """

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.bn1(x)
        out = self.relu(out)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class PreResNet(nn.Module):
    """The pre-activation ResNet for CIFAR of the SWAG experiments.

    A 3x3 convolution to 16 channels, three stages of ``(depth - 2) // 6``
    pre-activation blocks at 16, 32 and 64 channels (the last two of stride 2),
    a final BatchNorm and ReLU, ``AvgPool2d(8)``, a flatten by ``view`` and a
    linear layer; for 3x32x32 images. Convolutions are initialised with
    normal weights of variance ``2 / fan_out``.

    Parameters
    ----------
    depth : int, default=8
        ``6 n + 2`` layers (8, 20, 56, 110 in the papers; blocks are basic
        here at any depth).
    num_classes : int, default=10
        Outputs of the last layer.
    """

    def __init__(self, depth=8, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_layer(16, n)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.bn = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, planes, blocks, stride=1):
        layer = stage(PreActBlock, self.inplanes, planes, blocks, stride, False)
        self.inplanes = planes
        return layer

    def forward(self, x):
        x = self.conv1(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.bn(x)
        x = self.relu(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


# -- sequences -----------------------------------------------------------------------


class TokenConvNet(nn.Module):
    """Integer tokens ``(N, T)``: Embedding, Conv1d over time, LayerNorm, mean, Linear.

    Parameters
    ----------
    vocab : int, default=20
        Size of the vocabulary.
    dim : int, default=8
        Embedding and convolution width.
    n_outputs : int, default=3
        Outputs of the last layer.
    """

    def __init__(self, vocab=20, dim=8, n_outputs=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, n_outputs)

    def forward(self, tokens):
        h = self.embedding(tokens).transpose(1, 2)  # (N, dim, T)
        h = torch.relu(self.conv(h)).transpose(1, 2)  # (N, T, dim)
        h = self.norm(h)
        return self.fc(h.mean(dim=1))


class SequenceConvNet(nn.Module):
    """Float sequences ``(N, T, F)``: Conv1d, LayerNorm, max over time, Linear.

    Parameters
    ----------
    n_features : int, default=2
        Features of each time step.
    dim : int, default=8
        Convolution width.
    n_outputs : int, default=2
        Outputs of the last layer.
    """

    def __init__(self, n_features=2, dim=8, n_outputs=2):
        super().__init__()
        self.conv = nn.Conv1d(n_features, dim, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(dim, n_outputs)

    def forward(self, x):
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (N, T, dim)
        h = self.relu(self.norm(h))
        h, _ = torch.max(h, dim=1)
        return self.fc(h)
