"""The shape of the code: the research core stands alone, flags mean one thing, scripts choose their threads."""

import subprocess
import sys

import pytest

import audio_tagger
import eval as eval_script
import fusion
import prepare_spectrograms
import prepare_submission
import self_verify
import tag_files
import train
from utils.paths import REPO

CORE = ["atomic", "audio", "augment", "cli", "dataset_csv", "dataset_import", "device", "errors", "evaluation",
        "excerpt_source", "fold_run", "folds", "labels", "linear_baseline", "metrics", "model_files", "paths",
        "plots", "predict", "results", "resume", "self_verification", "spec_data", "spec_store", "spectrogram",
        "spectrogram_cache", "submission", "training", "vgg_gap"]
SIDE = ("utils.demo", "utils.live", "utils.launch")


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_research_core_imports_no_side_package():
    """Importing every core module pulls in none of the demo builder, the live tagger or the launchers."""
    code = ("import sys\n" + "".join(f"import utils.{m}\n" for m in CORE) +
            f"print(sorted(m for m in sys.modules if m.startswith({SIDE!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_core_module_is_listed():
    """A new flat module in utils/ is either core (listed above, so checked) or belongs in a side package."""
    flat = sorted(p.stem for p in (REPO / "utils").glob("*.py") if p.stem not in ("__init__", "tagging"))
    assert flat == sorted(CORE)


TRAIN = ["--model", "models/vgg_gap_demo.py", "--spec_dir", "specs_train_v1", "--fold", "1"]


def test_seed_spellings_are_aliases_of_the_one_flag():
    assert prepare_spectrograms.parse_args(["--audio_path", "a", "--spec_path", "s"]).out_dir == "s"
    assert prepare_spectrograms.parse_args(["--audio_path", "a", "--out_dir", "s"]).out_dir == "s"
    assert prepare_submission.parse_args(["--prediction_file", "p", "--out_file", "o"]).out == "o"
    assert prepare_submission.parse_args(["--prediction_file", "p", "--out", "o"]).out == "o"
    sv = ["--model", "m.py", "--spec_dir", "s", "--tag", "it0"]
    assert self_verify.parse_args([*sv, "--train_file", "t.csv"]).out == "t.csv"
    assert self_verify.parse_args([*sv, "--out", "t.csv"]).out == "t.csv"


def test_fusion_takes_set_as_flag_or_as_the_seeds_first_argument():
    flag = fusion.parse_args(["--set", "test", "a.npz", "b.npz", "--out", "f.npz"])
    seed = fusion.parse_args(["test", "a.npz", "b.npz", "--out", "f.npz"])
    assert (flag.set, flag.results) == (seed.set, seed.results) == ("test", ["a.npz", "b.npz"])
    with pytest.raises(SystemExit):
        fusion.parse_args(["a.npz", "--out", "f.npz"])  # no set at all
    with pytest.raises(SystemExit):
        fusion.parse_args(["test", "--out", "f.npz"])  # a set but no file


def test_device_is_always_the_torch_device():
    """--device names a torch device wherever it exists; the tagger's sound input has its own flag."""
    assert train.parse_args([*TRAIN, "--device", "cpu"]).device == "cpu"
    assert tag_files.parse_args(["x.wav", "--bundle", "b.pt", "--out", "o.csv", "--device", "cpu"]).device == "cpu"
    assert audio_tagger.parse_args(["--input_device", "2"]).input_device == "2"
    with pytest.raises(SystemExit):
        audio_tagger.parse_args(["--device", "2"])


@pytest.mark.parametrize("script, argv, default", [
    (train, TRAIN, None),
    (self_verify, ["--model", "m.py", "--spec_dir", "s", "--tag", "it0", "--out", "o.csv"], None),
    (eval_script, ["--model", "m.py", "--set", "valid"], None),
    (audio_tagger, [], 1),
])
def test_torch_scripts_choose_their_threads(script, argv, default, capsys):
    """Each script that runs torch has a --threads default of its own, and its --help says why."""
    from utils.cli import cpu_cores

    assert script.parse_args(argv).threads == (default or cpu_cores())
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threads" in help_text and "CPU threads for torch (default" in help_text


def test_resume_compares_every_flag_but_where_and_how_it_runs():
    """train.py's flags reach the run config as parsed (no second list of them to fall out of step): a resume
    compares each one, except where files are and what runs them (device, threads)."""
    args = train.parse_args(TRAIN)
    from utils.resume import WHERE_KEYS, resume_differences

    config = vars(args)
    assert resume_differences(config, {**config, "seed": 2}) == ["seed: 1 -> 2"]
    assert resume_differences(config, {**config, **{k: "elsewhere" for k in WHERE_KEYS}}) == []
