"""Iterative self-verification: each fold's model judges the unverified clips it never trained on.

A clip's given label is accepted when (1) the model's averaged prediction agrees with it, (2) the averaged
posterior of that class exceeds a threshold, and (3) its class has not yet reached the per-class cap
(clips taken highest posterior first, over all folds, so the cap keeps the label distribution)."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from utils import paths
from utils.atomic import save_json, save_text
from utils.dataset_csv import read_train_csv
from utils.folds import N_FOLDS, load_folds, split_fold
from utils.model_files import load_model_file, model_settings
from utils.predict import (
    check_spec_folder,
    load_trained_model,
    pick_device,
    predict_excerpts,
    predict_logits,
    softmax,
)
from utils.spec_data import load_spectrograms

# Excerpts of several clips per forward pass on a GPU (5 clips of 25): one clip's 25 leave a GPU mostly idle, and
# 128 excerpts of 384 frames of the full network fit a small GPU's memory. On a CPU one clip per pass: wider
# batches gained nothing there (measured: 1.01x for the demo net, 0.63x for the full one; benchmarks/full_size.py).
EXCERPTS_PER_PASS = 128


@dataclass
class SelfVerifyConfig:
    model: str
    spec_dir: str
    tag: str
    train_file: str
    data_root: str = "data"
    exp_root: str = "experiments"
    top_probs_thresh: float = 0.95
    k_per_class: int = 40
    stochastic: bool = False
    n_excerpts: int = 25
    max_len: int | None = None  # None: the length each fold's model was trained with
    seed: int = 1
    device: str | None = None


def accept(labels: np.ndarray, probs: np.ndarray, top_probs_thresh: float, k_per_class: int) -> np.ndarray:
    """Boolean mask of accepted clips. labels: (N,) given class indices; probs: (N, C) averaged posteriors.

    top_probs_thresh=0 reproduces the seed's published code, which skipped condition (2): a softmax
    posterior is always above 0."""
    n = len(labels)
    target_prob = probs[np.arange(n), labels]
    candidate = (probs.argmax(axis=1) == labels) & (target_prob > top_probs_thresh)
    accepted = np.zeros(n, dtype=bool)
    taken: dict[int, int] = {}
    for i in np.argsort(-target_prob, kind="stable"):
        if candidate[i] and taken.get(int(labels[i]), 0) < k_per_class:
            accepted[i] = True
            taken[int(labels[i])] = taken.get(int(labels[i]), 0) + 1
    return accepted


def output_path(cfg: SelfVerifyConfig) -> Path:
    """A bare file name goes into the model's run dir, next to the parameters that produced it. It never takes
    the data root's name (train.csv): train.py reads that name from the data root only, and a self-verified copy
    under it would be mistaken for, or shadow, the dataset's own labels."""
    path = Path(cfg.train_file)
    if path.name == paths.TRAIN_CSV:
        raise ValueError(f"--train_file {cfg.train_file}: a self-verified file may not be named {paths.TRAIN_CSV} "
                         "(the dataset's own file); use e.g. train_self_verified_it0.csv")
    return path if path.parent != Path(".") else paths.run_dir(cfg.exp_root, cfg.model) / path


def check_config(cfg: SelfVerifyConfig) -> None:
    """Flags that would otherwise reach numpy or torch as an empty batch or a meaningless threshold."""
    if not 0 <= cfg.top_probs_thresh < 1:
        raise ValueError(f"--top_probs_thresh must be in [0, 1) (a posterior), got {cfg.top_probs_thresh}")
    if cfg.k_per_class < 1:
        raise ValueError(f"--k_per_class must be at least 1, got {cfg.k_per_class}")
    if cfg.n_excerpts < 1:
        raise ValueError(f"--n_excerpts must be at least 1, got {cfg.n_excerpts}")
    if cfg.max_len is not None and cfg.max_len < 1:
        raise ValueError(f"--max_len must be at least 1, got {cfg.max_len}")


def summarize(held_out: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Per-class candidates / accepted / mean posterior, and, where a true_label column exists, how
    precise the acceptance was and how many noisy labels it kept out."""
    rows = []
    for c in classes:
        part = held_out[held_out["label"] == c]
        acc = part[part["accepted"]]
        rows.append({"class": c, "candidates": len(part), "accepted": len(acc),
                     "mean_posterior": float(part["posterior"].mean()) if len(part) else float("nan"),
                     "mean_posterior_accepted": float(acc["posterior"].mean()) if len(acc) else float("nan")})
    table = pd.DataFrame(rows)
    totals = {"candidates": len(held_out), "accepted": int(held_out["accepted"].sum())}
    if "true_label" in held_out.columns:
        correct = held_out["label"] == held_out["true_label"]
        accepted = held_out["accepted"]
        totals.update({
            "noisy_candidates": int((~correct).sum()),
            "accepted_correct": int((accepted & correct).sum()),
            "acceptance_precision": float(correct[accepted].mean()) if accepted.any() else float("nan"),
            "noisy_rejected": int((~correct & ~accepted).sum()),
            "candidate_precision": float(correct.mean()) if len(held_out) else float("nan"),
        })
    return table, totals


def self_verify(cfg: SelfVerifyConfig) -> dict:
    """Score every fold's held-out unverified clips with that fold's model, accept, write the train file."""
    check_config(cfg)
    out_path = output_path(cfg)
    settings = model_settings(load_model_file(cfg.model))
    device = pick_device(cfg.device)
    data_root = Path(cfg.data_root)
    train = read_train_csv(data_root / "train.csv")  # every iteration starts from the original flags
    folds = load_folds(data_root)
    rng = np.random.default_rng(cfg.seed)
    parts, classes = [], None
    for fold in range(1, N_FOLDS + 1):
        params = paths.params_path(cfg.exp_root, cfg.model, fold, cfg.tag)
        model, config = load_trained_model(cfg.model, params)
        model.to(device)
        if classes is not None and config["classes"] != classes:
            raise ValueError(f"{params} was trained on other classes than the other folds' models")
        classes = config["classes"]
        _, _, held_out = split_fold(train, folds, fold)  # only clips this fold's model never trained on
        max_len = cfg.max_len or config["max_len"]
        check_spec_folder(data_root / cfg.spec_dir, config, params)
        specs = load_spectrograms(data_root / cfg.spec_dir, held_out["fname"], max_len)
        if cfg.stochastic:
            per_pass = EXCERPTS_PER_PASS if device.type == "cuda" else cfg.n_excerpts
            probs = predict_excerpts(model, specs, max_len, settings["excerpt_len"], cfg.n_excerpts, device, rng,
                                     batch_excerpts_max=per_pass)
        else:
            probs = softmax(predict_logits(model, specs, max_len, settings["valid_batch_size"], device))
        held_out = held_out.assign(fold=fold)
        parts.append((held_out, probs))
        print(f"fold {fold}: scored {len(held_out)} held-out unverified clips with {params.name}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    held_out = pd.concat([p for p, _ in parts], ignore_index=True)
    probs = np.concatenate([p for _, p in parts]) if parts else np.zeros((0, len(classes)))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index.get(label, -1) for label in held_out["label"]])
    if (labels < 0).any():
        raise ValueError(f"label {held_out['label'][labels < 0].iloc[0]!r} is not among the model's classes")
    mask = accept(labels, probs, cfg.top_probs_thresh, cfg.k_per_class)
    held_out["posterior"] = probs[np.arange(len(labels)), labels]
    held_out["accepted"] = mask

    out = train.copy()
    out.loc[out["fname"].isin(held_out["fname"][mask]), "manually_verified"] = 1
    save_text(out_path, out.to_csv(index=False))

    table, totals = summarize(held_out, classes)
    summary = {"config": asdict(cfg), "totals": totals, "per_class": table.to_dict(orient="records"),
               "output": str(out_path)}
    save_json(out_path.with_suffix(".summary.json"), summary)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    line = f"accepted {totals['accepted']} of {totals['candidates']} unverified held-out clips"
    if "acceptance_precision" in totals:
        line += (f"; acceptance precision {totals['acceptance_precision']:.3f} "
                 f"(candidates' labels right: {totals['candidate_precision']:.3f}); "
                 f"noisy labels rejected: {totals['noisy_rejected']} of {totals['noisy_candidates']}")
    print(line)
    print(f"wrote {out_path}")
    return summary
