"""VGG-GAP with 8 base filters on spectrogram version 1, trained until converged with masks and a random gain: the
cpu preset's first net, for researchers' own data on a CPU."""

from torch import nn

from utils.model_files import CPU_SETTINGS
from utils.vgg_gap import demo_net

SETTINGS = {**CPU_SETTINGS, "spec_version": 1, "gain_db": 6.0}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes)
