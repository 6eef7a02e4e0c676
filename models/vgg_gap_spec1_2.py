"""VGG-GAP, 64 base filters, on spectrogram version 1 of SoX-trimmed audio."""

from torch import nn

from utils.vgg_gap import VGGGAP

SETTINGS = {"spec_version": 1, "preprocessing": True, "batch_size": 100, "mixup_alpha": 0.3,
            "fine_tune_lr": 1e-4}


def build_model(n_classes: int) -> nn.Module:
    return VGGGAP(nf=64, n_classes=n_classes)
