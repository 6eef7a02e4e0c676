"""Where a library replaced hand-written code (sklearn metrics, librosa.to_mono, atomic writes of npz and ONNX): the
edge cases the library handles differently, pinned."""

import errno
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# sklearn.metrics behind utils.metrics
from utils.metrics import confusion_matrix, format_report, per_class_scores


def test_report_when_no_prediction_is_right():
    # sklearn returns float supports when no prediction is right; the table's CNT column needs integers
    y = np.array([0, 1])
    ranked = np.array([[1, 2, 0], [0, 2, 1]])
    s = per_class_scores(y, ranked[:, 0], 3)
    assert s["count"].dtype.kind == "i" and s["count"].tolist() == [1, 1, 0]
    lines = format_report(y, ranked, ["a", "b", "c"]).splitlines()
    assert "Overall Accuracy: 0.000 %" in lines and lines[-1] == f"MAP@3: {1 / 3:.4f}"


@pytest.mark.parametrize("y_true, y_pred", [([0, 3], [0, 1]), ([0, 1], [0, -1])])
def test_labels_outside_the_classes_are_errors(y_true, y_pred):
    # sklearn would drop such clips from every count without a word
    for f in (confusion_matrix, per_class_scores):
        with pytest.raises(ValueError, match=r"outside 0\.\.2"):
            f(np.array(y_true), np.array(y_pred), 3)


def test_f1_is_the_exact_ratio():
    # class 0: tp 5, fp 12, fn 10 -> F1 = 2tp / (2tp + fp + fn) = 10/32 = 0.3125 exactly, printed 0.312
    y = np.array([0] * 15 + [1] * 12)
    pred = np.array([0] * 5 + [1] * 10 + [0] * 12)
    assert per_class_scores(y, pred, 2)["f1"][0] == 10 / 32


# the evaluation report built on them
from utils.evaluation import report_and_plot  # noqa: E402
from utils.labels import FSDKAGGLE2018_CLASSES  # noqa: E402
from utils.submission import NOT_A_CLASS, unknown_labels  # noqa: E402


def test_unknown_labels_are_counted():
    sub = {"a.wav": ["Hi-Hat", "Flute", "Bark"], "b.wav": ["Hi-Hat", "not_a_label", "Flute"]}
    assert unknown_labels(sub, FSDKAGGLE2018_CLASSES) == {"Hi-Hat": 2, "not_a_label": 1}


def test_report_figures_show_the_classes_in_use(tmp_path, monkeypatch):
    import utils.evaluation as evaluation

    shown = {}
    real_cm, real_scores = evaluation.plot_confusion_matrix, evaluation.plot_class_scores
    monkeypatch.setattr(evaluation, "plot_confusion_matrix",
                        lambda cm, names: shown.update(cm=cm, cm_names=names) or real_cm(cm, names))
    monkeypatch.setattr(evaluation, "plot_class_scores",
                        lambda names, p, r, f: shown.update(names=names, p=p, r=r, f=f) or real_scores(names, p, r, f))
    classes = [*FSDKAGGLE2018_CLASSES, NOT_A_CLASS]
    y = np.array([3, 3, 7, 40])
    ranked = np.array([[3, 1, 2], [7, 1, 2], [7, 1, 2], [41, 1, 2]])  # 41: NOT_A_CLASS, always a miss
    _, figures = report_and_plot(y, ranked, classes, tmp_path, "x")
    assert all(f.stat().st_size > 0 for f in figures)
    assert shown["cm_names"] == shown["names"] == [classes[i] for i in (3, 7, 40, 41)]
    np.testing.assert_array_equal(shown["cm"], [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_allclose(shown["p"], [1, 0.5, 0, 0])
    np.testing.assert_allclose(shown["r"], [0.5, 1, 0, 0])


# librosa.to_mono behind utils.audio
from utils.audio import AudioError, load_audio, to_mono  # noqa: E402


def test_to_mono_shapes():
    x = np.random.default_rng(0).standard_normal((1000, 3)).astype(np.float32)
    mono = to_mono(x)
    assert mono.shape == (1000,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, x.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(to_mono(x[:, :1]), x[:, 0])
    assert to_mono(x[:, 0]).shape == (1000,)


def test_stereo_with_nan_is_refused_naming_the_file(tmp_path):
    x = np.zeros((3200, 2), np.float32)
    x[100, 1] = np.nan
    sf.write(tmp_path / "nan.wav", x, 32000, subtype="FLOAT")
    for preprocess in (False, True):
        with pytest.raises(AudioError, match="nan.wav: 1 NaN/inf sample"):
            load_audio(tmp_path / "nan.wav", preprocess=preprocess)

# and in test_sox_pipe_equals_sox_temp_file, widen the parameters (all bit-identical here, 3 channels included):
#   @pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
#   @pytest.mark.parametrize("channels", [1, 2, 3])


# atomic writes: the ONNX export and save_npz
def test_onnx_export_is_atomic(tmp_path, monkeypatch):
    import torch

    from utils.live.predictors import export_onnx_model
    from utils.model_files import load_model_file
    from utils.paths import REPO

    model = load_model_file(REPO / "models" / "vgg_gap_demo_no_pp.py").build_model(n_classes=2)
    out = export_onnx_model(model, tmp_path / "sub" / "m.onnx")  # the folder is made
    before = out.read_bytes()

    def half_written(model, args, f, **kwargs):
        Path(f).write_bytes(b"half")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx_model(model, out)
    assert out.read_bytes() == before  # the old model is kept whole
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]  # and no temp file is left


def test_save_npz_round_trip_and_failure(tmp_path, monkeypatch):
    from utils.atomic import save_npz

    path = tmp_path / "r.npz"
    save_npz(path, a=np.arange(3), s=np.asarray("x"))
    with np.load(path, allow_pickle=False) as z:
        assert z["a"].tolist() == [0, 1, 2] and str(z["s"]) == "x"
    def disk_full(f, **arrays):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="no space left"):
        save_npz(path, a=np.arange(4))
    with np.load(path) as z:
        assert z["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]
