"""VGG-GAP, 64 base filters, on spectrogram version 2 of SoX-trimmed audio."""

from torch import nn

from utils.vgg_gap import VGGGAP

SETTINGS = {"spec_version": 2, "preprocessing": True, "batch_size": 50, "mixup_alpha": 0.3,
            "fine_tune_lr": 2e-4}


def build_model(n_classes: int) -> nn.Module:
    return VGGGAP(nf=64, n_classes=n_classes)
