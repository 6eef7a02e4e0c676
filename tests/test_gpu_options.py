"""train.py's GPU options, exercised on the CPU: the device-resident data path gives the host path's batches,
mixed precision and the compiled step train and resume, and folds stepped together in one process train as they
would alone."""

import json

import numpy as np
import pytest
import torch

import train
from benchmarks.gpu_check import QUICK_MODEL
from tests.helpers import write_train_csv
from utils import paths
from utils.excerpt_source import DeviceExcerpts, HostExcerpts, draw_starts, excerpt_source
from utils.fold_run import FoldRun
from utils.model_files import load_model_file
from utils.spec_data import batch_whole, random_excerpt
from utils.training import EpochBatches

DEMO = "models/vgg_gap_demo.py"


def train_args(demo_root, exp_root, *extra):
    # pinned to the CPU: these tests compare runs bit for bit, which cuDNN's algorithm choices would break on a GPU
    # (benchmarks/gpu_check.py compares the CUDA paths within tolerances)
    return ["--model", DEMO, "--data_root", str(demo_root), "--exp_root", str(exp_root), "--device", "cpu",
            "--spec_dir", "specs_train_v1", "--max_len", "600", *extra]


def run(demo_root, exp_root, *extra):
    train.main(train.parse_args(train_args(demo_root, exp_root, *extra)))


def checkpoint(exp_root, fold=1, tag="it0", model=DEMO):
    return torch.load(paths.checkpoint_path(exp_root, model, fold, tag), weights_only=True)


def assert_same_training(a, b, exact=False):
    for key, value in a["model"].items():
        if exact:
            assert torch.equal(b["model"][key], value), key
        else:
            torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5)
    assert [r["valid_loss"] for r in a["history"]] == pytest.approx([r["valid_loss"] for r in b["history"]],
                                                                    rel=1e-4)


class Interrupted(Exception):
    pass


def interrupt_before_epoch(monkeypatch, stop_at: int):
    """The run stops (as if killed) when it would begin epoch stop_at (counted from 0), its checkpoint written."""
    begin = FoldRun.begin_epoch

    def begin_or_stop(self, epoch):
        if epoch == stop_at:
            raise Interrupted
        return begin(self, epoch)

    monkeypatch.setattr(FoldRun, "begin_epoch", begin_or_stop)


# ---- the data path ---------------------------------------------------------------------------------------------

def clips(rng, n=12, bins=5):
    """Clips shorter than an excerpt, between, and longer than max_len (clipped to it, as load_spectrograms does)."""
    lengths = [3, 7, 40, 90, 150, 150, 17, 1, 64, 65, 120, 33][:n]
    return [rng.standard_normal((bins, min(n_frames, 100)), dtype=np.float32) for n_frames in lengths]


def test_device_path_cuts_the_host_paths_batches():
    rng = np.random.default_rng(0)
    specs, max_len, excerpt_len = clips(rng), 100, 64
    host = HostExcerpts(specs, torch.device("cpu"))
    device = DeviceExcerpts(specs, torch.device("cpu"))
    for idx, batch_rng in EpochBatches(seed=4, epoch=2, n_items=len(specs), batch_size=5, world_size=1, rank=0):
        starts = draw_starts(batch_rng, len(idx), max_len, excerpt_len)
        a, b = host.cut(idx, starts, excerpt_len), device.cut(idx, starts, excerpt_len)
        assert a.shape == (5, 1, 5, excerpt_len) and a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b)
        # each excerpt is the one utils.spec_data cuts from the clip tiled/clipped to max_len at that start
        for i, r in enumerate(idx):
            np.testing.assert_array_equal(a[i, 0].numpy(), random_excerpt(specs[r], max_len, excerpt_len,
                                                                          FixedRng(starts[i])))
    # validation's whole clips: tiled to max_len from frame 0, as batch_whole does
    rows = np.arange(len(specs))
    whole = device.cut(rows, np.zeros(len(rows), dtype=np.int64), max_len)
    np.testing.assert_array_equal(whole.numpy(), batch_whole(specs, max_len))


class FixedRng:
    def __init__(self, start: int):
        self.start = int(start)

    def integers(self, low: int, high: int) -> int:
        assert low <= self.start < high
        return self.start


def test_device_store_in_half_precision_holds_the_rounded_frames():
    specs = clips(np.random.default_rng(1))
    store = DeviceExcerpts(specs, torch.device("cpu"), torch.bfloat16)
    assert store.frames.dtype == torch.bfloat16
    x = store.cut(np.array([3]), np.array([5]), 64)
    expected = torch.from_numpy(specs[3][:, 5:69]).to(torch.bfloat16).float()
    assert x.dtype == torch.float32 and torch.equal(x[0, 0], expected)


def test_auto_keeps_the_host_path_without_a_gpu():
    specs = clips(np.random.default_rng(2))
    source, why = excerpt_source(specs, torch.device("cpu"), "auto", torch.float32)
    assert isinstance(source, HostExcerpts) and "not a GPU" in why
    source, why = excerpt_source(specs, torch.device("cpu"), "device", torch.float32)
    assert isinstance(source, DeviceExcerpts)


def test_training_on_the_device_path_equals_the_host_path(demo_root, tmp_path):
    common = ("--fold", "2", "--epochs", "2", "--seed", "3")
    run(demo_root, tmp_path / "host", *common, "--data_on", "host")
    run(demo_root, tmp_path / "device", *common, "--data_on", "device")
    # the same numbers through the same kernels: bit for bit
    assert_same_training(checkpoint(tmp_path / "host", 2), checkpoint(tmp_path / "device", 2), exact=True)


# ---- the step --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_equal(demo_root, tmp_path, monkeypatch, amp):
    # the GPU check's 2-filter net: fp16's backward pass is emulated on a CPU (28 s a demo-net step)
    tiny = tmp_path / "tiny_net.py"
    tiny.write_text(QUICK_MODEL)
    common = ("--fold", "1", "--epochs", "2", "--amp", amp, "--model", str(tiny))
    run(demo_root, tmp_path / "whole", *common)
    whole = checkpoint(tmp_path / "whole", model=tiny)
    assert whole["config"]["amp"] == amp and whole["epoch"] == 2
    assert all(np.isfinite(r["train_loss"]) for r in whole["history"])
    if amp == "fp16":  # the scaler's state travels with the checkpoint (bf16 needs no scaler)
        assert whole["scaler"]["scale"] > 0 and "_growth_tracker" in whole["scaler"]
    else:
        assert whole["scaler"] == {}

    with monkeypatch.context() as patch:
        interrupt_before_epoch(patch, stop_at=1)
        with pytest.raises(Interrupted):
            run(demo_root, tmp_path / "broken", *common)
    assert checkpoint(tmp_path / "broken", model=tiny)["epoch"] == 1
    run(demo_root, tmp_path / "broken", *common)
    broken = checkpoint(tmp_path / "broken", model=tiny)
    assert_same_training(whole, broken)
    if amp == "fp16":
        assert broken["scaler"] == whole["scaler"]
    # mixed precision is substance: resuming it in full precision is refused, naming the setting
    with pytest.raises(ValueError, match="amp: 'bf16' -> False|amp: 'fp16' -> False"):
        run(demo_root, tmp_path / "broken", "--fold", "1", "--epochs", "2", "--model", str(tiny))


def test_compiled_channels_last_step_resumes_in_eager_mode(demo_root, tmp_path, monkeypatch):
    common = ("--fold", "3", "--epochs", "2")
    with monkeypatch.context() as patch:
        interrupt_before_epoch(patch, stop_at=1)
        with pytest.raises(Interrupted):
            run(demo_root, tmp_path, *common, "--compile", "--channels_last")
    ckpt = checkpoint(tmp_path, 3)
    # saved from the module itself, not the compiled wrapper: loads into a plain network
    assert not any(key.startswith("_orig_mod") for key in ckpt["model"])
    assert ckpt["model"]["features.0.weight"].is_contiguous(memory_format=torch.channels_last)
    # how the step runs is not substance: the eager, NCHW run takes the checkpoint over and finishes
    run(demo_root, tmp_path, *common)
    log = json.loads(paths.log_path(tmp_path, DEMO, 3, "it0").read_text())
    assert log["finished"] and log["config"]["compile"] is False
    # Adam's moments were brought into the parameters' layout (fused Adam on a GPU refuses mixed layouts)
    moments = [state["exp_avg"] for state in checkpoint(tmp_path, 3)["optimizer"]["state"].values()
               if state["exp_avg"].dim() == 4 and state["exp_avg"].shape[1] > 1 and
               state["exp_avg"].shape[2] * state["exp_avg"].shape[3] > 1]  # 1 channel or 1x1: both layouts at once
    assert moments and all(m.is_contiguous() and not m.is_contiguous(memory_format=torch.channels_last)
                           for m in moments)
    params = torch.load(paths.params_path(tmp_path, DEMO, 3, "it0"), weights_only=True)
    net = load_model_file(DEMO).build_model(n_classes=5)
    net.load_state_dict(params["state_dict"])


# ---- folds in one process --------------------------------------------------------------------------------------

def test_folds_in_one_process_train_as_separate_runs(demo_root, tmp_path, capsys):
    common = ("--epochs", "1", "--seed", "7")
    for k in (1, 2):
        run(demo_root, tmp_path / "separate", "--fold", str(k), *common)
    run(demo_root, tmp_path / "shared", "--fold", "1", "2", *common)
    out = capsys.readouterr().out
    assert "fold 2 epoch   1/1" in out  # each line says whose it is
    for k in (1, 2):
        # each fold's own outputs, as a run of that fold alone writes them
        separate, shared = checkpoint(tmp_path / "separate", k), checkpoint(tmp_path / "shared", k)
        assert shared["config"]["fold"] == k
        assert_same_training(separate, shared, exact=True)


def test_shared_folds_resume_each_from_its_own_epoch(demo_root, tmp_path, monkeypatch):
    common = ("--epochs", "3", "--seed", "2")
    run(demo_root, tmp_path / "separate", "--fold", "1", *common)
    run(demo_root, tmp_path / "separate", "--fold", "2", *common)
    # fold 1 alone got one epoch, then both were stopped after another together; then both go on to the end
    with monkeypatch.context() as patch:
        interrupt_before_epoch(patch, stop_at=1)
        with pytest.raises(Interrupted):
            run(demo_root, tmp_path / "shared", "--fold", "1", *common)
    with monkeypatch.context() as patch:
        interrupt_before_epoch(patch, stop_at=2)
        with pytest.raises(Interrupted):
            run(demo_root, tmp_path / "shared", "--fold", "1", "2", *common)
    assert checkpoint(tmp_path / "shared", 1)["epoch"] == 2 and checkpoint(tmp_path / "shared", 2)["epoch"] == 2
    run(demo_root, tmp_path / "shared", "--fold", "2", "1", *common)
    for k in (1, 2):
        assert_same_training(checkpoint(tmp_path / "separate", k), checkpoint(tmp_path / "shared", k), exact=True)


def test_a_fold_twice_is_refused(tmp_path):
    write_train_csv(tmp_path / "data")
    with pytest.raises(ValueError, match="lists a fold twice"):
        run(tmp_path / "data", tmp_path, "--fold", "1", "1")
    assert not list(tmp_path.rglob(".lock*"))  # refused before any lock was taken
