"""VGG-GAP with 16 base filters on spectrogram version 1: between the demo nets (8) and the full ones (48), for the
medium default (make_demo_dataset.py --size medium), where benchmarks/self_verification.py measures the method.
One model's four folds, pretraining and three fine-tuning rounds, train on 2 CPU cores in about 20 minutes."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

# The demo schedule, cut to fit three seeds of the evidence (pretraining, three arms of three rounds) into two
# hours of 2 CPU cores: 10 pretraining epochs (decaying from the 5th) on four times the demo's clips per epoch
# (37-55 s per fold and epoch, two folds side by side), and three fine-tuning rounds of one epoch each
SETTINGS = {**DEMO_SETTINGS, "spec_version": 1, "epochs": 10, "decay_from": 5,
            "fine_tune_epochs": 1, "fine_tune_decay_from": 1}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes, nf=16)
