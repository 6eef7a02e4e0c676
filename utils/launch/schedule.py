"""The experiment schedule: pretrain every model, then iterate self-verification and fine-tuning.

A schedule is a flat list of steps; each step knows its command and the outputs that prove it done, so a
schedule started again skips finished steps and goes on where it stopped."""

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils import paths
from utils.atomic import save_json
from utils.errors import InputError, MissingFile
from utils.folds import fold_numbers, has_unverified, load_folds
from utils.model_files import load_model_file, model_settings
from utils.training import resolve_stage


@dataclass(frozen=True)
class Preset:
    models: tuple[tuple[str, str], ...]  # (model file, training spectrogram dir)
    max_len: int
    iterations: int
    top_probs_thresh: float
    k_per_class: int
    n_excerpts: int
    train_flags: tuple[str, ...] = ()  # how train.py runs the step (not what it learns)


PRESETS = {
    # the seed's schedule: three networks, ten self-verification iterations -> 3 + 10 * 3 * 2 = 63 steps
    "full": Preset(models=(("models/vgg_gap_spec2.py", "specs_train_v2"),
                           ("models/vgg_gap_spec1_1.py", "specs_train_v1"),
                           ("models/vgg_gap_spec1_2.py", "specs_train_v1")),
                   max_len=3000, iterations=10, top_probs_thresh=0.95, k_per_class=40, n_excerpts=25),
    # the same shape on the embedded default with the small demo networks, minutes on 2 CPU cores. The tiny,
    # mixup-trained nets are far less confident than the full ones: none of their averaged posteriors reaches
    # 0.95, while agreement with posterior > 0.3 already accepts labels that are 93-97% right (vs 70% unfiltered)
    "demo": Preset(models=(("models/vgg_gap_demo.py", "specs_train_v1"),
                           ("models/vgg_gap_demo_v2.py", "specs_train_v2")),
                   max_len=1500, iterations=1, top_probs_thresh=0.3, k_per_class=40, n_excerpts=25,
                   # NHWC convolutions: a demo-net step on one CPU thread 302 instead of 432 ms (1.43x), validation
                   # 91 instead of 192 ms (oneDNN's blocked layout suits 8-channel maps)
                   train_flags=("--channels_last",)),
    # the medium default (make_demo_dataset.py --size medium), where benchmarks/self_verification.py measures the
    # method: one 16-filter net, three rounds. 10 excerpts per clip, not 25: a round's verification then costs about
    # one fine-tuning epoch on 2 CPU cores instead of three
    # researchers' own data on a CPU: the demo's two small nets (v1 and v2) with the recipe for small data sets
    # (masks, a random gain on v1) trained until their inner validation loss has converged; see models/vgg_gap_cpu.py
    "cpu": Preset(models=(("models/vgg_gap_cpu.py", "specs_train_v1"),
                          ("models/vgg_gap_cpu_v2.py", "specs_train_v2")),
                  max_len=1000, iterations=1, top_probs_thresh=0.3, k_per_class=40, n_excerpts=10,
                  train_flags=("--channels_last",)),
    "medium": Preset(models=(("models/vgg_gap_medium.py", "specs_train_v1"),),
                     max_len=1500, iterations=3, top_probs_thresh=0.95, k_per_class=40, n_excerpts=10,
                     train_flags=("--channels_last",)),
}

# The controls a self-verification schedule is compared against: the same fine-tuning iterations from the same
# pretrained models, on train.csv's labels as given. name -> (tag prefix, the clips fine-tuned on)
CONTROLS = {"all_labels": ("base", "all"), "verified_only": ("ver", "verified")}


@dataclass
class Step:
    name: str
    per_fold: bool        # True: run once per fold with --fold K appended
    command: list[str]
    folds: list[int] = field(default_factory=list)  # the data root's folds (per-fold steps: one output each)
    outputs: list[Path] = field(default_factory=list)
    model: str = ""
    tag: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # what its outputs must have been made with
    exp_root: Path = Path("experiments")

    def done(self) -> bool:
        return all(output_done(p) for p in self.outputs)

    def differences(self) -> list[str]:
        """Settings in which the step's existing outputs (finished or not) differ from this schedule's, as
        'key: recorded -> wanted'; empty when there are none or they match."""
        for path in self.outputs:
            recorded = recorded_settings(path)
            if recorded is None:
                continue
            diff = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in self.settings.items()
                    if _comparable(recorded.get(k)) != _comparable(v)]
            if diff:
                return diff
        return []

    def files(self) -> list[Path]:
        """Everything the step writes, for --redo: logs, parameters, checkpoints, train files, summaries."""
        if not self.per_fold:  # a self-verified train file and its summary
            return [f for path in self.outputs for f in (path, path.with_suffix(".summary.json"))]
        return [f(self.exp_root, self.model, k, self.tag) for k in self.folds
                for f in (paths.log_path, paths.params_path, paths.final_params_path, paths.checkpoint_path)]

    def shell(self) -> str:
        return shlex.join(self.command)


def output_done(path: Path) -> bool:
    """A training log counts only once its run finished; any other output counts once it exists."""
    if not path.is_file():
        return False
    if path.suffix == ".json" and path.name.startswith("results_"):
        try:
            return bool(json.loads(path.read_text()).get("finished"))
        except (json.JSONDecodeError, OSError):
            return False
    return True


def _comparable(value: Any) -> Any:
    # a file setting is compared by name: the schedule and a run may spell its folder differently
    return Path(value).name if isinstance(value, str) and ("/" in value or value.endswith((".csv", ".py"))) else value


def recorded_settings(path: Path) -> dict[str, Any] | None:
    """The settings an output was made with: a training log's config, a self-verified file's summary config."""
    source = path if path.suffix == ".json" else path.with_suffix(".summary.json")
    try:
        return json.loads(source.read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None  # absent, or not ours to judge: the launcher decides from the outputs alone


def stale_steps(steps: list[Step]) -> list[tuple[Step, list[str]]]:
    return [(step, diff) for step in steps if (diff := step.differences())]


def redo_from(steps: list[Step], stale: list[tuple[Step, list[str]]]) -> list[Path]:
    """Remove the outputs of the stale steps and of every later step of the same models (they were built on
    them); returns the removed files."""
    first = {}
    for step, _ in stale:
        first.setdefault(step.model, steps.index(step))
    removed = []
    for i, step in enumerate(steps):
        if step.model in first and i >= first[step.model]:
            for f in step.files():
                if f.exists():
                    f.unlink()
                    removed.append(f)
    return removed


def train_logs(exp_root: Path, model: str, tag: str, folds: list[int]) -> list[Path]:
    return [paths.log_path(exp_root, model, k, tag) for k in folds]


def build_schedule(preset: Preset, experiment_set: str, data_root: Path, exp_root: Path, iterations: int | None = None,
                   seed: int = 1, control: str | None = None, epochs: int | None = None,
                   top_probs_thresh: float | None = None) -> list[Step]:
    """The steps of 'pretrain', 'finetune' or 'all', over the data root's folds (its folds.csv). With a control
    (CONTROLS), the fine-tuning iterations train on train.csv's labels without self-verification, with the same
    epochs: all of them, noisy ones included, or the verified clips alone; the controls the evidence compares
    against. A data set without unverified clips has nothing to self-verify: its schedule is the pretraining
    alone (see nothing_to_verify)."""
    iterations = preset.iterations if iterations is None else iterations
    thresh = preset.top_probs_thresh if top_probs_thresh is None else top_probs_thresh
    py = sys.executable
    folds_table = load_folds(data_root)
    folds = fold_numbers(folds_table)
    if control is not None and control not in CONTROLS:
        raise InputError(f"unknown control {control!r}; choose one of {', '.join(CONTROLS)}")
    if not has_unverified(folds_table) and control is None:
        iterations = 0

    def train_settings(model: str, fine_tune: bool, **extra: Any) -> dict[str, Any]:
        resolved = resolve_stage(model_settings(load_model_file(model)), fine_tune, epochs).epochs
        return {"seed": seed, "max_len": preset.max_len, "epochs": resolved, "fine_tune": fine_tune, **extra}

    roots = ["--data_root", str(data_root), "--exp_root", str(exp_root), "--max_len", str(preset.max_len)]
    train_flags = list(preset.train_flags)
    epochs_args = [] if epochs is None else ["--epochs", str(epochs)]
    steps: list[Step] = []
    if experiment_set in ("pretrain", "all"):
        for model, spec_dir in preset.models:
            steps.append(Step(f"pretrain_{paths.model_name(model)}", True,
                              [py, "train.py", "--model", model, "--spec_dir", spec_dir, *roots, "--tag", "it0",
                               "--seed", str(seed), *epochs_args, *train_flags], folds,
                              train_logs(exp_root, model, "it0", folds), model, "it0",
                              train_settings(model, False, spec_dir=spec_dir, train_on="all"), exp_root))
    if experiment_set in ("finetune", "all"):
        prefix, train_on = CONTROLS[control] if control else ("it", "verified")
        for i in range(iterations):
            prev = "it0" if i == 0 else f"{prefix}{i}"
            new = f"{prefix}{i + 1}"
            for model, spec_dir in preset.models:
                name = paths.model_name(model)
                if control:
                    train_file = "train.csv"
                else:
                    train_file = f"train_self_verified_{prev}.csv"
                    steps.append(Step(
                        f"self_verify_{name}_{prev}", False,
                        [py, "self_verify.py", "--model", model, "--spec_dir", spec_dir, *roots, "--tag", prev,
                         "--out", train_file, "--top_probs_thresh", str(thresh),
                         "--k_per_class", str(preset.k_per_class), "--stochastic",
                         "--n_excerpts", str(preset.n_excerpts), "--seed", str(seed)], folds,
                        [paths.run_dir(exp_root, model) / train_file], model, prev,
                        {"seed": seed, "max_len": preset.max_len, "top_probs_thresh": thresh,
                         "k_per_class": preset.k_per_class, "n_excerpts": preset.n_excerpts, "stochastic": True,
                         "spec_dir": spec_dir}, exp_root))
                steps.append(Step(
                    f"finetune_{name}_{new}", True,
                    [py, "train.py", "--model", model, "--spec_dir", spec_dir, *roots, "--fine_tune",
                     "--ini_params", f"params_%d_{prev}", "--train_file", train_file, "--tag", new,
                     "--seed", str(seed), "--train_on", train_on, *epochs_args, *train_flags],
                    folds, train_logs(exp_root, model, new, folds), model, new,
                    train_settings(model, True, spec_dir=spec_dir, train_file=train_file, train_on=train_on),
                    exp_root))
    return steps


def nothing_to_verify(data_root: Path) -> bool:
    """True where the data root has no unverified clips: self-verification has nothing to do there."""
    return not has_unverified(load_folds(data_root))


def fold_summary(exp_root: Path, model: str, tag: str, folds: list[int]) -> dict | None:
    """Mean over folds of a finished iteration's figures; None if unfinished. 'final_*': the model at the end of
    training (its inner validation loss, where the converged rule held clips out, and its accuracy on the reported
    fold, which chose nothing); 'valid_loss'/'valid_acc': the epoch of lowest validation loss (the writeup's choice,
    made on the reported fold); 'stop_rule': the runs' rule."""
    rows = []
    for log in train_logs(exp_root, model, tag, folds):
        if not output_done(log):
            return None
        record = json.loads(log.read_text())
        history = record["history"]
        best = min(history, key=lambda row: row["valid_loss"])
        rows.append({"valid_loss": best["valid_loss"], "valid_acc": best["valid_acc"],
                     "final_valid_acc": history[-1]["valid_acc"], "final_inner_loss": history[-1].get("inner_loss"),
                     "epochs": len(history), "stop_rule": record["config"].get("stop_rule", "fixed")})
    summary = {key: float(np.mean([r[key] for r in rows])) for key in ("valid_loss", "valid_acc", "final_valid_acc",
                                                                      "epochs")}
    inner = [r["final_inner_loss"] for r in rows]
    return {**summary, "valid_acc_std": float(np.std([r["valid_acc"] for r in rows])),
            "valid_accs": [r["valid_acc"] for r in rows], "final_valid_accs": [r["final_valid_acc"] for r in rows],
            "final_inner_loss": None if None in inner else float(np.mean(inner)), "stop_rule": rows[0]["stop_rule"]}


def select_best_iterations(preset: Preset, exp_root: Path, iterations: int, folds: list[int]) -> dict:
    """Each model's iterations, written to <exp_root>/best_iterations.json for evaluation and fusion, with the folds
    they cover:
      tag          the iteration evaluation, fusion and bundles use: under the converged rule the one of lowest mean
                   inner validation loss (chosen on clips held out of training); under the fixed rule the one of
                   lowest mean validation loss (the writeup's choice, made on the reported folds);
      honest_tag   the iteration whose final models the cross-validation figures score, chosen by nothing the
                   reported folds say: `tag` under the converged rule, the last iteration under the fixed one;
      writeup_tag  the iteration of lowest mean validation loss, and its best epochs: the writeup's choice."""
    choice = {}
    for model, spec_dir in preset.models:
        tags = {}
        for tag in ["it0"] + [f"it{i}" for i in range(1, iterations + 1)]:
            summary = fold_summary(exp_root, model, tag, folds)
            if summary is not None:
                tags[tag] = summary
        if not tags:
            continue
        writeup = min(tags, key=lambda t: tags[t]["valid_loss"])
        converged = all(t["final_inner_loss"] is not None for t in tags.values())
        best = min(tags, key=lambda t: tags[t]["final_inner_loss"]) if converged else writeup
        honest = best if converged else list(tags)[-1]
        figures = {**tags[best], **({"valid_loss": tags[best]["final_inner_loss"],
                                     "valid_acc": tags[best]["final_valid_acc"],
                                     "valid_acc_std": float(np.std(tags[best]["final_valid_accs"]))}
                                    if converged else {})}
        choice[paths.model_name(model)] = {
            "model": model, "spec_dir": spec_dir, "tag": best, "folds": folds, **figures,
            "chosen_by": "inner validation loss" if converged else "validation loss (the reported folds)",
            "honest_tag": honest, "writeup_tag": writeup, "writeup_valid_acc": tags[writeup]["valid_acc"],
            "writeup_valid_accs": tags[writeup]["valid_accs"], "iterations": tags}
    save_json(paths.best_iterations_path(exp_root), choice)
    return choice


def read_best_iterations(exp_root: Path) -> dict:
    """<exp_root>/best_iterations.json: model name -> model, spec_dir, tag, folds and validation figures."""
    path = paths.best_iterations_path(exp_root)
    if not path.is_file():
        raise MissingFile(f"{path} not found; run run_experiment_set.py first")
    try:
        best = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e}); run run_experiment_set.py again to rewrite it") from None
    if not best:
        raise InputError(f"{path} lists no model (no iteration finished?)")
    for name, choice in best.items():
        missing = [k for k in ("model", "spec_dir", "tag", "folds", "valid_acc", "honest_tag", "writeup_tag")
                   if k not in choice]
        if missing:
            raise InputError(f"{path}: model {name!r} lacks {', '.join(missing)}; run run_experiment_set.py again "
                             "to rewrite it")
    return best
