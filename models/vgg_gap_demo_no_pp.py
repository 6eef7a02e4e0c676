"""The demo network on spectrogram version 2 of untrimmed audio: a small live-tagger model."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

SETTINGS = {**DEMO_SETTINGS, "spec_version": 2, "preprocessing": False}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes)
