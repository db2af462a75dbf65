"""The reference PyTorch network, with exactly the module names of its printout.

A state_dict saved from the reference code loads into `TorchResNet34()` with `strict=True`, and
`jaxresnet.pytorch.convert` maps it onto the flax model. torch is an optional extra: importing `jaxresnet`
never imports this module.

    TorchResNet34(
      (conv1): Sequential((0): Conv2d(3, 64, 7, stride=2, padding=5), (1): BatchNorm2d(64), (2): ReLU)
      (maxpool): MaxPool2d(kernel_size=2, stride=2)
      (layer1): Sequential((0): ResNetBlock((basicblock): Sequential(0 conv, 1 bn, 2 relu, 3 conv, 4 bn),
                                            (relu): ReLU, (downsample): Sequential()) ...)
      ... (layer4) ...
      (avgpool): AdaptiveAvgPool2d((1, 1)), (fc1): Linear(512, 128), (fc2): Linear(128, 10)
    )
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jaxresnet.data import MEAN, STD


class ResNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.basicblock = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.relu = nn.ReLU(inplace=True)
        if stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = nn.Sequential()  # identity, printed as an empty Sequential

    def forward(self, x):
        return self.relu(self.basicblock(x) + self.downsample(x))


class TorchResNet(nn.Module):
    def __init__(self, stage_sizes=(3, 4, 6, 3), num_classes: int = 10, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 5, bias=True),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(2, 2)
        in_ch = widths[0]
        for i, (blocks, width) in enumerate(zip(stage_sizes, widths)):
            layer = []
            for j in range(blocks):
                layer.append(ResNetBlock(in_ch, width, 2 if i > 0 and j == 0 else 1))
                in_ch = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc1 = nn.Linear(widths[-1], 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc2(self.fc1(x))


def TorchResNet34(num_classes: int = 10) -> TorchResNet:
    return TorchResNet((3, 4, 6, 3), num_classes)


def TorchResNet18(num_classes: int = 10) -> TorchResNet:
    return TorchResNet((2, 2, 2, 2), num_classes)


TORCH_ARCHS = {"resnet18": TorchResNet18, "resnet34": TorchResNet34}


def torch_preprocess(images_u8: torch.Tensor, size: int, stats=(MEAN, STD)) -> torch.Tensor:
    """uint8 NHWC -> float NCHW: the same bilinear resize and normalisation as `jaxresnet.data.preprocess`."""
    x = images_u8.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
