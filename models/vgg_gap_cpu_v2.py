"""VGG-GAP with 8 base filters on spectrogram version 2, trained until converged with masks (version 2 is
peak-normalised, so no gain): the cpu preset's second net."""

from torch import nn

from utils.model_files import CPU_SETTINGS
from utils.vgg_gap import demo_net

SETTINGS = {**CPU_SETTINGS, "spec_version": 2}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes)
