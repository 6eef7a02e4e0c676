"""VGG-GAP with 16 base filters on spectrogram version 1: between the demo nets (8) and the full ones (48), for the
medium default (make_demo_dataset.py --size medium), where benchmarks/self_verification.py measures the method.
One model, four folds, pretraining and three fine-tuning rounds train on 2 CPU cores in about half an hour."""

from torch import nn

from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import demo_net

# The demo schedule, shortened: the medium default has four times the demo's clips per epoch, and three fine-tuning
# rounds of two epochs replace the demo's one of five
SETTINGS = {**DEMO_SETTINGS, "spec_version": 1, "epochs": 10, "decay_from": 5,
            "fine_tune_epochs": 2, "fine_tune_decay_from": 1}


def build_model(n_classes: int) -> nn.Module:
    return demo_net(n_classes, nf=16)
