import pytest
import torch

from utils.model_files import load_model_file, model_settings

# trainable parameters for 41 classes, from the training issue (BatchNorm statistics excluded)
EXPECTED = {
    "vgg_gap_spec1_1": (8_362_306, 48, 100, 0.2, 1e-4),
    "vgg_gap_spec1_2": (14_855_570, 64, 100, 0.3, 1e-4),
    "vgg_gap_spec2": (14_855_570, 64, 50, 0.3, 2e-4),
    "vgg_gap_spec2_no_pp": (14_855_570, 64, 50, 0.3, 2e-4),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_and_settings(name):
    module = load_model_file(f"models/{name}.py")
    model = module.build_model(41)
    trainable, _, batch, alpha, ft_lr = EXPECTED[name]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    settings = model_settings(module)
    assert (settings["batch_size"], settings["mixup_alpha"], settings["fine_tune_lr"]) == (batch, alpha, ft_lr)
    assert settings["lr"] == 1e-3 and settings["epochs"] == 500 and settings["decay_from"] == 100
    assert settings["fine_tune_epochs"] == 30 and settings["fine_tune_decay_from"] == 5


def test_writeup_total_includes_batchnorm_statistics():
    model = load_model_file("models/vgg_gap_spec1_2.py").build_model(41)
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(b.numel() for n, b in model.named_buffers() if "running" in n)
    assert trainable + running == 14_865_124


@pytest.mark.parametrize("frames", [256, 384, pytest.param(3000, marks=pytest.mark.slow)])
def test_forward_any_length(frames):
    model = load_model_file("models/vgg_gap_spec1_1.py").build_model(41).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 128, frames))
    assert out.shape == (2, 41)
    assert torch.isfinite(out).all()


def test_batchnorm_settings_and_no_conv_bias():
    model = load_model_file("models/vgg_gap_demo.py").build_model(10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 15
    assert all(c.bias is None for c in convs)
    assert all(b.eps == 1e-4 and b.momentum == 0.1 for b in bns)


def test_model_file_without_build_model(tmp_path):
    bad = tmp_path / "bad_model.py"
    bad.write_text("SETTINGS = {}\n")
    with pytest.raises(ValueError, match="build_model"):
        load_model_file(bad)


def test_unknown_setting_rejected(tmp_path):
    bad = tmp_path / "typo_model.py"
    bad.write_text("SETTINGS = {'batchsize': 3}\ndef build_model(n_classes):\n    return None\n")
    with pytest.raises(ValueError, match="batchsize"):
        model_settings(load_model_file(bad))


def test_a_model_file_overrides_only_the_settings_it_names(tmp_path):
    bare, own = tmp_path / "bare_model.py", tmp_path / "own_model.py"
    bare.write_text("def build_model(n_classes):\n    return None\n")
    own.write_text("SETTINGS = {'batch_size': 3}\ndef build_model(n_classes):\n    return None\n")
    shared, overridden = model_settings(load_model_file(bare)), model_settings(load_model_file(own))
    assert overridden["batch_size"] == 3 != shared["batch_size"]
    assert {k: v for k, v in overridden.items() if k != "batch_size"} == {
        k: v for k, v in shared.items() if k != "batch_size"}
