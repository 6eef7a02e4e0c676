"""The demo model (8 base filters) on spectrogram version 2 of untrimmed audio: a small live-tagger model."""

from torch import nn

from utils.vgg_gap import VGGGAP

SETTINGS = {"spec_version": 2, "preprocessing": False, "batch_size": 32, "mixup_alpha": 0.3, "lr": 2e-3,
            "epochs": 20, "decay_from": 10, "fine_tune_lr": 5e-4, "fine_tune_epochs": 8, "fine_tune_decay_from": 2}


def build_model(n_classes: int = 41) -> nn.Module:
    return VGGGAP(nf=8, n_classes=n_classes, dropout=0.1, dropout_head=0.2)
