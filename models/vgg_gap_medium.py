"""VGG-GAP with 16 base filters on spectrogram version 1: between the demo nets (8) and the full ones (48), for the
medium default (make_demo_dataset.py --size medium), where benchmarks/self_verification.py measures the method.
One model's four folds, pretraining and three fine-tuning rounds, train on 2 CPU cores in about 25 minutes."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

# The demo schedule's 14 pretraining epochs (on four times the demo's clips per epoch: ~37 s per fold and epoch,
# two folds side by side on 2 cores); three fine-tuning rounds of two epochs replace the demo's one of five
SETTINGS = {**DEMO_SETTINGS, "spec_version": 1, "fine_tune_epochs": 2, "fine_tune_decay_from": 1}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes, nf=16)
