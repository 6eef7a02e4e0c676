"""The demo network on spectrogram version 2: the second member of the demo ensemble."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

SETTINGS = {**DEMO_SETTINGS, "spec_version": 2}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes)
