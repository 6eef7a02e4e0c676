"""eval.py on a tiny trained model, and the submission round trip: result files -> fusion.py ->
prepare_submission.py -> evaluate_leaderboard.py, plus every way these refuse bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import eval as eval_script
import evaluate_leaderboard
import fusion
import prepare_submission
import train
from utils.atomic import save_json
from utils.dataset_csv import DataError
from utils.metrics import map_at_k
from utils.paths import MANIFEST_NAME, REPO
from utils.results import Results, load_results, save_results
from utils.spectrogram_cache import build_manifest

pytestmark = pytest.mark.slow  # every test here needs the model the setup fixture trains

CLASSES = ["Cello", "Flute", "Oboe", "Trumpet", "Hi-hat"]
MODEL = str(REPO / "models" / "vgg_gap_demo.py")
MAX_LEN = 600
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EMPTY_SCORED, EMPTY_IGNORED = "e0000000.wav", "e0000001.wav"  # test clips without a spectrogram


def fake_spec(rng: np.random.Generator, c: int) -> np.ndarray:
    """Noise with a class-dependent band of bins, so a tiny model learns something in a few epochs."""
    s = rng.normal(size=(128, rng.integers(100, 900))).astype(np.float32) * 0.1
    s[c * 20:(c + 1) * 20] += 1
    return s


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A data root with 120 training and 32 test clips of 5 classes, and fold 1 of vgg_gap_demo trained on it.
    As in the real test set, a third of the test rows are Ignored (label None), and two clips have no spectrogram
    (their audio was empty): one scored, one Ignored."""
    root, exp = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("exp")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):  # synthetic spectrograms, in folders that say which features they hold
        (root / f"specs_{split}_v1").mkdir()
        save_json(root / f"specs_{split}_v1" / MANIFEST_NAME, build_manifest(1, True))
    rows = []
    for i in range(120):
        fname = f"{i:08x}.wav"
        rows.append((fname, CLASSES[i % 5], int(i % 3 == 0)))
        np.save(root / "specs_train_v1" / f"{fname[:-4]}.npy", fake_spec(rng, i % 5))
    pd.DataFrame(rows, columns=["fname", "label", "manually_verified"]).to_csv(root / "train.csv", index=False)
    rows = []
    for i in range(30):
        fname, usage = f"t{i:07x}.wav", ("Public", "Private", "Ignored")[i % 3]
        rows.append((fname, CLASSES[i % 5] if usage != "Ignored" else "None", usage, i, "CC0"))
        np.save(root / "specs_test_v1" / f"{fname[:-4]}.npy", fake_spec(rng, i % 5))
    rows.insert(7, (EMPTY_SCORED, "Cello", "Private", 98, "CC0"))
    rows.insert(20, (EMPTY_IGNORED, "None", "Ignored", 99, "CC0"))
    (root / "specs_test_v1" / "failed.txt").write_text(f"{EMPTY_SCORED}: no samples\n{EMPTY_IGNORED}: no samples\n")
    pd.DataFrame(rows, columns=["fname", "label", "usage", "freesound_id", "license"]).to_csv(
        root / "test_post_competition.csv", index=False)
    train.main(train.parse_args(["--model", MODEL, "--data_root", str(root), "--exp_root", str(exp),
                                 "--spec_dir", "specs_train_v1", "--fold", "1", "--max_len", str(MAX_LEN),
                                 "--epochs", "2"]))
    return root, exp


def run_eval(root: Path, exp: Path, *extra: str) -> None:
    eval_script.main(eval_script.parse_args(
        ["--model", MODEL, "--data_root", str(root), "--exp_root", str(exp), "--spec_dir", "specs_train_v1",
         "--max_len", str(MAX_LEN), *extra]))


def printed_map(out: str) -> float:
    last = out.strip().splitlines()[-1]
    assert last.startswith("MAP@3: ")
    return float(last.split()[1])


def test_eval_valid_prints_table_and_saves_figures(setup, tmp_path, capsys):
    root, exp = setup
    run_eval(root, exp, "--fold", "1", "--tag", "it0", "--set", "valid", "--dump_results", "--out_dir", str(tmp_path))
    out = capsys.readouterr().out
    assert "LABEL  |  CNT  |   ACC   |   PR   |   RE   |    F1    |" in out
    assert "average  |" in out and "Overall Accuracy: " in out
    for name in ("cmatrix", "pr_re_f"):
        png = tmp_path / f"{name}_valid_specs_train_v1_1_it0.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    # the dump holds the fold's verified held-out clips, and the printed MAP@3 is theirs
    res = load_results(tmp_path / "probs_valid_specs_train_v1_1_it0.npz")
    folds = pd.read_csv(root / "folds.csv")
    expected = folds[(folds["fold"] == 1) & (folds["verified"] == 1)]["fname"]
    assert sorted(res.fnames.tolist()) == sorted(expected)
    assert res.classes == sorted(CLASSES) and res.set_name == "valid"
    np.testing.assert_allclose(res.probs.sum(axis=1), 1, rtol=1e-5)
    labels = pd.read_csv(root / "train.csv").set_index("fname").loc[res.fnames, "label"]
    y = np.array([res.classes.index(label) for label in labels])
    assert printed_map(out) == pytest.approx(map_at_k(y, res.probs), abs=5e-5)


def test_result_file_is_plain_npz(setup, tmp_path, capsys):
    root, exp = setup
    run_eval(root, exp, "--fold", "1", "--set", "test", "--dump_results", "--out_dir", str(tmp_path))
    with np.load(tmp_path / "probs_test_specs_train_v1_1_it0.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["classes", "fnames", "missing", "probs", "set"]
        assert z["probs"].shape == (32, 5) and z["probs"].dtype == np.float32
        # every row of the test CSV, in its order; the two without a spectrogram marked, with the class prior
        fnames = z["fnames"].tolist()
        assert fnames == list(pd.read_csv(root / "test_post_competition.csv")["fname"])
        assert [f for f, m in zip(fnames, z["missing"], strict=True) if m] == [EMPTY_SCORED, EMPTY_IGNORED]
        labels = pd.read_csv(root / "train.csv")["label"]
        prior = [np.mean(labels == c) for c in z["classes"]]
        np.testing.assert_allclose(z["probs"][z["missing"]], [prior, prior], rtol=1e-6)
        assert not np.allclose(z["probs"][~z["missing"]], prior, atol=1e-3)  # the others are the model's
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "2 of 32 clips have no spectrogram" in err
    assert EMPTY_SCORED in err and EMPTY_IGNORED in err and "failed.txt" in err


def test_scored_set_reports_its_missing_clips(setup, tmp_path, capsys):
    root, exp = setup
    run_eval(root, exp, "--fold", "1", "--set", "private", "--out_dir", str(tmp_path))
    out, err = capsys.readouterr()
    assert "1 of 11 clips have no spectrogram" in err and EMPTY_SCORED in err and EMPTY_IGNORED not in err
    assert "on set 'private': 11 clips (1 without a spectrogram, scored with the class prior)" in out


def test_eval_refuses_a_set_without_any_spectrogram(setup, tmp_path):
    root, exp = setup
    other = tmp_path / "root"
    (other / "specs_test_v1").mkdir(parents=True)
    save_json(other / "specs_test_v1" / MANIFEST_NAME, build_manifest(1, True))  # the folder, made, but empty
    for name in ("train.csv", "test_post_competition.csv"):
        (other / name).symlink_to(root / name)
    with pytest.raises(DataError, match="none of the 32 clips .* has a spectrogram"):
        run_eval(other, exp, "--params", str(exp / "vgg_gap_demo" / "params_1_it0.pt"), "--set", "test",
                 "--dump_results", "--out_dir", str(tmp_path))


def test_eval_rejects_labels_outside_the_model(setup, tmp_path):
    root, exp = setup
    other = tmp_path / "root"
    other.mkdir()
    (other / "specs_test_v1").symlink_to(root / "specs_test_v1")
    test = pd.read_csv(root / "test_post_competition.csv")
    test.loc[0, "label"] = "Bark"  # a real FSDKaggle2018 class, but not one of the model's five
    test.to_csv(other / "test_post_competition.csv", index=False)
    with pytest.raises(ValueError, match="'Bark' is not among this model's 5 classes"):
        run_eval(other, exp, "--params", str(exp / "vgg_gap_demo" / "params_1_it0.pt"), "--set", "public",
                 "--out_dir", str(tmp_path))


@pytest.fixture(scope="module")
def test_results(setup, tmp_path_factory):
    """Two aligned test-set result files: the model's, and a second 'model' with other posteriors."""
    root, exp = setup
    out = tmp_path_factory.mktemp("results")
    run_eval(root, exp, "--fold", "1", "--set", "test", "--dump_results", "--out_dir", str(out))
    first = load_results(out / "probs_test_specs_train_v1_1_it0.npz")
    rng = np.random.default_rng(5)
    other = rng.dirichlet(np.ones(5), size=len(first.fnames)).astype(np.float32)
    save_results(out / "probs_test_specs_train_v1_2_it0.npz", Results(first.fnames, first.classes, other, "test"))
    return out, first


def test_submission_round_trip_scores_like_the_probabilities(setup, test_results, tmp_path, capsys):
    root, _ = setup
    out, first = test_results
    fused = tmp_path / "fused.npz"
    # a quoted glob, expanded by fusion.py itself, with the weights of one argument shared by its files
    fusion.main(fusion.parse_args(["test", str(out / "probs_test_specs_train_v1_[12]_it0.npz"),
                                   "--out", str(fused), "--weights", "1"]))
    res = load_results(fused)
    second = load_results(out / "probs_test_specs_train_v1_2_it0.npz")
    np.testing.assert_allclose(res.probs, (first.probs + second.probs) / 2, rtol=1e-6)
    sub = tmp_path / "submission.csv"
    prepare_submission.main(prepare_submission.parse_args(["--prediction_file", str(fused), "--out_file", str(sub),
                                                           "--data_root", str(root)]))
    assert "2 of them from the class prior" in capsys.readouterr().out
    lines = sub.read_text().splitlines()
    assert lines[0] == "fname,label" and len(lines) == 33
    assert [line.split(",")[0] for line in lines[1:]] == list(pd.read_csv(root / "test_post_competition.csv")["fname"])
    assert res.missing.tolist() == first.missing.tolist() and res.missing.sum() == 2  # marks survive the fusion
    fname, labels = lines[1].split(",")
    assert fname == res.fnames[0] and labels.split() == [res.classes[i] for i in np.argsort(-res.probs[0])[:3]]

    test = pd.read_csv(root / "test_post_competition.csv").set_index("fname").loc[res.fnames]
    for set_name, usages in [("public", ["Public"]), ("private", ["Private"]),
                             ("private_public", ["Public", "Private"])]:
        capsys.readouterr()
        evaluate_leaderboard.main(evaluate_leaderboard.parse_args(
            ["--submission_file", str(sub), "--set", set_name, "--data_root", str(root), "--out_dir", str(tmp_path)]))
        keep = test["usage"].isin(usages).to_numpy()
        y = np.array([res.classes.index(label) for label in test["label"][keep]])
        assert printed_map(capsys.readouterr().out) == pytest.approx(map_at_k(y, res.probs[keep]), abs=5e-5)
        for name in ("cmatrix", "pr_re_f"):
            assert (tmp_path / f"{name}_leaderboard_{set_name}_submission.png").read_bytes()[:8] == PNG_MAGIC


def misaligned(first: Results, how: str) -> Results:
    fnames, classes, probs = first.fnames, list(first.classes), first.probs
    if how == "order":
        fnames, probs = fnames[::-1], probs[::-1]
    elif how == "subset":
        fnames, probs = fnames[:-1], probs[:-1]
    elif how == "class_order":
        classes, probs = classes[::-1], probs[:, ::-1]
    elif how == "other_classes":
        classes = ["Bark", *classes[1:]]
    return Results(fnames, classes, probs, first.set_name)


@pytest.mark.parametrize("how,message", [("order", "same clips in another order"), ("subset", "different clips"),
                                         ("class_order", "classes .in another order"),
                                         ("other_classes", "a different class list")])
def test_fusion_refuses_misaligned_files(test_results, tmp_path, how, message):
    out, first = test_results
    bad = tmp_path / "bad.npz"
    save_results(bad, misaligned(first, how))
    fused = tmp_path / "fused.npz"
    with pytest.raises(ValueError, match=message):
        fusion.main(fusion.parse_args(["test", str(out / "probs_test_specs_train_v1_1_it0.npz"), str(bad),
                                       "--out", str(fused)]))
    assert not fused.exists()


def test_submission_must_have_the_test_csvs_rows(setup, test_results, tmp_path):
    root, _ = setup
    _, first = test_results
    sub = tmp_path / "sub.csv"
    for how, message in (("subset", "misses 1 of its 32 rows"), ("order", "in another order")):
        save_results(tmp_path / "r.npz", misaligned(first, how))
        with pytest.raises(DataError, match=message):
            prepare_submission.main(prepare_submission.parse_args(
                ["--prediction_file", str(tmp_path / "r.npz"), "--out_file", str(sub), "--data_root", str(root)]))
        assert not sub.exists()


def test_fusion_refuses_another_set_and_unmatched_patterns(test_results, tmp_path):
    out, _ = test_results
    with pytest.raises(ValueError, match="holds set 'test', not 'public'"):
        fusion.main(fusion.parse_args(["public", str(out / "probs_test_*.npz"), "--out", str(tmp_path / "f.npz")]))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        fusion.main(fusion.parse_args(["test", str(out / "nothing_*.npz"), "--out", str(tmp_path / "f.npz")]))


@pytest.fixture
def good_submission(setup, tmp_path) -> tuple[Path, list[str]]:
    root, _ = setup
    test = pd.read_csv(root / "test_post_competition.csv")
    lines = ["fname,label"] + [f"{f},Cello Flute Oboe" for f in test["fname"]]
    return tmp_path / "sub.csv", lines


def score(setup, path: Path) -> None:
    evaluate_leaderboard.main(evaluate_leaderboard.parse_args(
        ["--submission_file", str(path), "--set", "private_public", "--data_root", str(setup[0]),
         "--out_dir", str(path.parent)]))


BAD_SUBMISSIONS = {
    "header": (lambda lines: ["fname,labels", *lines[1:]], "expected the header fname,label"),
    "missing": (lambda lines: lines[:1] + lines[2:], "misses 1 of the 21 clips"),
    "duplicated": (lambda lines: [*lines, lines[1]], "duplicated fname"),
    "unknown_fname": (lambda lines: [*lines, "zzz.wav,Cello Flute Oboe"], "not in .*test_post_competition.csv"),
    "two_labels": (lambda lines: [lines[0], lines[1].replace(" Oboe", ""), *lines[2:]], "expected 3 .*got 2"),
    "four_labels": (lambda lines: [lines[0], lines[1] + " Bark", *lines[2:]], "expected 3 .*got 4"),
    "repeated_label": (lambda lines: [lines[0], lines[1].replace("Oboe", "Cello"), *lines[2:]], "repeated"),
    "empty": (lambda lines: [], "expected the header"),
}


def test_good_submission_scores(setup, good_submission, capsys):
    path, lines = good_submission
    path.write_text("\n".join(lines) + "\n")
    score(setup, path)
    # every clip ranks Cello, Flute, Oboe: 4 (Cello: 5) of the 21 scored clips per class, ranks 1, 2, 3
    assert printed_map(capsys.readouterr().out) == pytest.approx(round((5 + 4 / 2 + 4 / 3) / 21, 4))


def test_kaggle_sample_submission_layout_scores(setup, good_submission, capsys):
    """Kaggle's sample_submission.csv: every fname, Ignored ones too, with 'Laughter Hi-Hat Flute', where
    'Hi-Hat' is not a class name ('Hi-hat' is). Kaggle scored it as a miss; so do we, with one warning."""
    path, lines = good_submission
    path.write_text("\n".join([lines[0], *(f"{line.split(',')[0]},Laughter Hi-Hat Flute" for line in lines[1:])])
                    + "\n")
    score(setup, path)
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "'Hi-Hat' x32" in err and "miss" in err
    assert printed_map(out) == pytest.approx(round((4 / 3) / 21, 4))  # the 4 Flute clips, at rank 3


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
def test_bad_submissions_are_errors(setup, good_submission, case):
    path, lines = good_submission
    edit, message = BAD_SUBMISSIONS[case]
    path.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DataError, match=message):
        score(setup, path)


def test_cli_error_is_one_line(setup, good_submission):
    path, lines = good_submission
    path.write_text("\n".join([lines[0], lines[1] + " Bark", *lines[2:]]) + "\n")
    p = subprocess.run([sys.executable, str(REPO / "evaluate_leaderboard.py"), "--submission_file", str(path),
                        "--set", "public", "--data_root", str(setup[0])], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: ") and ":2: expected 3" in p.stderr
