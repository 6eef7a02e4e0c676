"""One line for what the project checks, a traceback for the code's own bugs: run_cli catches only the project's
error types; a researcher's model file that raises keeps its traceback under a line naming the file."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import write_train_csv
from utils.cli import run_cli
from utils.errors import DataError, InputError, UserCodeError
from utils.model_files import build_network, load_model_file
from utils.paths import REPO
from utils.predict import load_params


def run_main(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_cli(main, argparse.Namespace())
    return info.value.code, capsys.readouterr().err


def raising(error: Exception):
    def main(_args):
        raise error
    return main


def test_project_errors_are_one_line(capsys):
    for error in (DataError("train.csv:3: empty label"), InputError("--epochs must be at least 1, got 0")):
        code, err = run_main(raising(error), capsys)
        assert code == 1 and err == f"error: {error}\n"


def test_other_exceptions_keep_their_traceback(capsys):
    # a shape bug in a model, an out-of-memory: Python's own errors are not the user's mistake
    for error in (ValueError("shapes (3,) and (4,) not aligned"), RuntimeError("CUDA out of memory")):
        with pytest.raises(type(error)):
            run_cli(raising(error), argparse.Namespace())


def test_debug_shows_the_traceback_of_project_errors(monkeypatch):
    monkeypatch.setenv("FSDTAG_DEBUG", "1")
    with pytest.raises(DataError):
        run_cli(raising(DataError("bad")), argparse.Namespace())


@pytest.fixture
def model_files(tmp_path):
    files = {"not_python": REPO / "README.md", "folder": tmp_path}
    for name, text in {"no_build": "x = 1\n",
                       "raises_on_import": "import torch\nraise RuntimeError('oops in my model')\n",
                       "raises_on_build": "from torch import nn\n\ndef build_model(n_classes):\n"
                                          "    return nn.Linear(3, 'four')\n",
                       "returns_no_module": "def build_model(n_classes):\n    return None\n"}.items():
        files[name] = tmp_path / f"{name}.py"
        files[name].write_text(text)
    return files


@pytest.mark.parametrize("name, message", [("not_python", "is not a Python file (.py)"), ("folder", "is a folder"),
                                           ("no_build", "defines no build_model(n_classes) function")])
def test_a_file_that_is_no_model_file_is_one_line(model_files, name, message, capsys):
    code, err = run_main(lambda _args: load_model_file(model_files[name]), capsys)
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_model_file_that_raises_shows_its_traceback_under_one_line(model_files, capsys):
    code, err = run_main(lambda _args: load_model_file(model_files["raises_on_import"]), capsys)
    first, *rest = err.splitlines()
    assert code == 1 and first.startswith("error: model file ") and "raises_on_import.py raised RuntimeError" in first
    assert "Traceback" in rest[0] and 'raises_on_import.py", line 2' in err and rest[-1] == (
        "RuntimeError: oops in my model")

    module = load_model_file(model_files["raises_on_build"])
    code, err = run_main(lambda _args: build_network(module, 5), capsys)
    assert "build_model(n_classes=5) raised TypeError" in err.splitlines()[0] and "nn.Linear(3, 'four')" in err
    with pytest.raises(InputError, match="returned NoneType, not a torch.nn.Module"):
        build_network(load_model_file(model_files["returns_no_module"]), 5)
    with pytest.raises(UserCodeError):
        build_network(module, 5)


@pytest.mark.slow  # a subprocess importing torch
def test_train_checks_the_model_file_before_the_data(model_files, tmp_path):
    write_train_csv(tmp_path / "data")
    proc = subprocess.run([sys.executable, "train.py", "--model", str(model_files["raises_on_import"]), "--spec_dir",
                           "specs_train_v1", "--fold", "1", "--data_root", str(tmp_path / "data"), "--exp_root",
                           str(tmp_path / "exp")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("error: model file ")
    assert "oops in my model" in proc.stderr and not (tmp_path / "data" / "folds.csv").exists()


def test_load_params_says_what_torch_said(tmp_path):
    pickled = tmp_path / "numpy_inside.pt"
    torch.save({"state_dict": {}, "config": {"classes": np.array(["a", "b"])}}, pickled)
    with pytest.raises(InputError, match=r"torch would not load it safely: Unsupported global.*numpy.*pickled objects"):
        load_params(pickled)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pickled.read_bytes()[:60])
    with pytest.raises(InputError, match=r"truncated or corrupt; torch: RuntimeError: PytorchStreamReader failed"):
        load_params(truncated)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--iterations", "-1"], "--iterations must be at least 0, got -1"),
    (["--num_gpus", "-2"], "--num_gpus must be at least 0"),
])
def test_schedule_flags_are_checked_before_any_step(tmp_path, capsys, flags, message):
    import run_experiment_set

    write_train_csv(tmp_path / "data")
    argv = ["--preset", "demo", "--data_root", str(tmp_path / "data"), "--exp_root", str(tmp_path / "exp"), *flags]
    code, err = run_main(lambda _args: run_experiment_set.main(run_experiment_set.parse_args(argv)), capsys)
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (tmp_path / "exp").exists() and not (tmp_path / "data" / "folds.csv").exists()


def test_schedule_roots_are_checked_before_any_step(tmp_path, capsys):
    import run_experiment_set

    (tmp_path / "exp_file").write_text("")
    write_train_csv(tmp_path / "data")
    for roots, message in ((["--data_root", str(tmp_path / "nowhere")], "is not a folder"),
                           (["--data_root", str(tmp_path / "data"), "--exp_root", str(tmp_path / "exp_file")],
                            "is a file, not a folder")):
        argv = ["--preset", "demo", *roots]
        code, err = run_main(lambda _args, argv=argv: run_experiment_set.main(run_experiment_set.parse_args(argv)),
                             capsys)
        assert code == 1 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("flags, message", [(["--segment", "0.001"], "--segment must be a number of seconds of at "
                                                                      "least 0.032"),
                                            (["--segment", "nan"], "--segment must be"),
                                            (["--jobs", "0"], "--jobs must be at least 1, got 0")])
def test_tag_files_flags_are_checked_before_any_file(tmp_path, capsys, flags, message):
    import tag_files

    argv = ["--bundle", str(tmp_path / "no_bundle.pt"), str(tmp_path), "--out", str(tmp_path / "t.csv"), *flags]
    code, err = run_main(lambda _args: tag_files.main(tag_files.parse_args(argv)), capsys)
    assert code == 1 and message in err and err.count("\n") == 1


def test_model_files_of_the_checkout_load_from_any_folder(tmp_path, monkeypatch):
    """Presets, best_iterations.json and bundles name models/<variant>.py: scripts started elsewhere find them."""
    monkeypatch.chdir(tmp_path)
    assert load_model_file("models/vgg_gap_demo.py").__file__ == str(REPO / "models" / "vgg_gap_demo.py")
    (tmp_path / "mine.py").write_text("def build_model(n_classes):\n    return None\n")
    assert callable(load_model_file("mine.py").build_model)  # the working directory's own, too
