"""VGG-GAP with 8 base filters on spectrogram version 1: the full design, sized so the demo schedule
(two models, four folds, pretraining and self-verification) trains on 2 CPU cores in minutes."""

from torch import nn

from utils.vgg_gap import VGGGAP

SETTINGS = {"spec_version": 1, "batch_size": 32, "mixup_alpha": 0.3, "lr": 2e-3, "epochs": 30,
            "decay_from": 10, "fine_tune_lr": 5e-4, "fine_tune_epochs": 8, "fine_tune_decay_from": 2}


def build_model(n_classes: int = 41) -> nn.Module:
    return VGGGAP(nf=8, n_classes=n_classes)
