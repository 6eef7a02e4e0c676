"""VGG-GAP with 8 base filters on spectrogram version 1: the full design, sized so the demo schedule
(two models, four folds, pretraining and self-verification) trains on 2 CPU cores in minutes."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

SETTINGS = {**DEMO_SETTINGS, "spec_version": 1}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes)
