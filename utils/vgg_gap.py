"""The VGG-style fully convolutional network with global average pooling (the writeup's Table 1).

All variants differ only in the number of base filters `nf`; the model files in models/ choose it."""

import torch
from torch import nn

BN_EPS = 1e-4
BN_MOMENTUM = 0.1
MIN_FRAMES = 256  # below this the last 3x3 'valid' conv has nothing left to convolve


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None,
            relu: bool = True) -> list[nn.Module]:
    """Conv (no bias: BatchNorm's shift replaces it) + BatchNorm [+ ReLU]."""
    padding = kernel // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                               nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class VGGGAP(nn.Module):
    """Input (N, 1, 128, T) with T >= 256; output class logits (N, n_classes)."""

    def __init__(self, nf: int, n_classes: int, dropout: float = 0.3, dropout_head: float = 0.5):
        super().__init__()
        d, dh = dropout, dropout_head
        self.features = nn.Sequential(
            *conv_bn(1, nf, kernel=5, stride=2), *conv_bn(nf, nf), nn.MaxPool2d(2), nn.Dropout(d),
            *conv_bn(nf, 2 * nf), *conv_bn(2 * nf, 2 * nf), nn.MaxPool2d(2), nn.Dropout(d),
            *conv_bn(2 * nf, 4 * nf), nn.Dropout(d), *conv_bn(4 * nf, 4 * nf), nn.Dropout(d),
            *conv_bn(4 * nf, 6 * nf), nn.Dropout(d), *conv_bn(6 * nf, 6 * nf), nn.MaxPool2d(2), nn.Dropout(d),
            *conv_bn(6 * nf, 8 * nf), *conv_bn(8 * nf, 8 * nf), nn.MaxPool2d((1, 2)), nn.Dropout(d),
            *conv_bn(8 * nf, 8 * nf), *conv_bn(8 * nf, 8 * nf), nn.MaxPool2d((1, 2)), nn.Dropout(d),
            *conv_bn(8 * nf, 8 * nf, padding=0), nn.Dropout(dh), *conv_bn(8 * nf, 8 * nf, kernel=1), nn.Dropout(dh),
        )
        # one linear map per class; global average pooling of these maps gives the logits
        self.classifier = nn.Sequential(*conv_bn(8 * nf, n_classes, kernel=1, relu=False))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class score maps before pooling, (N, n_classes, F', T')."""
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_maps(x).mean(dim=(2, 3))


def demo_net(n_classes: int, nf: int = 8) -> VGGGAP:
    """The demo networks: 8 base filters (the medium one 16), and dropout 0.1/0.2 instead of 0.3/0.5. With few maps
    per layer, dropout's variance shift between training and inference compounds over the 15 BatchNorm layers until the
    eval-mode net predicts one class (measured on the embedded default: 4% validation accuracy with 0.3/0.5,
    47% with the same weights and dropout left on)."""
    return VGGGAP(nf=nf, n_classes=n_classes, dropout=0.1, dropout_head=0.2)
