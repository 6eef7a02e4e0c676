"""The prepared GPU check: every CUDA path against the CPU, the figures, and a short real training, in minutes.
Run by hand on a CUDA machine (README "Training on a GPU" has the recipe and what travels with it):

    python -m benchmarks.gpu_check --prepare gpu_carry --data_root data       # here: a small data root to carry
    python -m benchmarks.gpu_check --data_root gpu_carry --out $OUT/gpu_check.txt   # there, under 5 minutes
    python -m benchmarks.gpu_check --quick --device cpu --data_root data --out check.txt   # the suite's CPU run

On the device it checks, each against the same computation on the CPU or an unbroken run, with tolerances where
cuDNN's algorithms round otherwise:
  1. the device data path cuts the host path's batches (indices, starts and mixup weights equal, excerpts equal);
  2. bf16 and fp16 train with finite, falling loss, and an interrupted run resumes to the unbroken one's weights
     (fp16's gradient-scaler state in the checkpoint); a compiled channels_last run resumes eagerly (not --quick);
  3. two folds stepped in one process train as two separate runs;
  4. self-verification's posteriors (random excerpts) and evaluation's (whole clips) equal the CPU's;
  5. an end-to-end run: two epochs of one fold on the carried spectrograms, evaluated on its validation clips;
  6. that run's model as a bundle tags signals as on the CPU (needs librosa and soundfile there), files/s, and the
     seed's whole ensemble (3 networks x 4 folds) tags files at a rate (not --quick);
then runs benchmarks.train_step for the figures (samples/s, data wait, peak memory, achieved TFLOP/s, folds in
one process, self-verification rate, the projected 63-step schedule). It prints one summary table and writes it,
with every section's output, to --out. Exit status 1 when a check failed."""

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import eval as eval_script
import train
from utils import paths
from utils.atomic import save_text
from utils.device import pick_device
from utils.excerpt_source import DeviceExcerpts, HostExcerpts, draw_starts
from utils.fold_run import FoldRun
from utils.folds import load_folds
from utils.model_files import build_network, load_model_file, model_settings
from utils.paths import REPO
from utils.predict import predict_excerpts, predict_logits
from utils.spec_data import load_spectrograms
from utils.training import mixup_weights

MODEL = "models/vgg_gap_demo.py"  # the demo net: the checks compare paths, not what a full net learns
# --quick: a 2-filter net, batches of 8, as the test suite's tiny models (fp16 convolutions' backward pass is
# emulated on a CPU: 28 s a demo-net step), so that every path runs in seconds
QUICK_MODEL = """from utils.model_files import DEMO_SETTINGS
from utils.vgg_gap import VGGGAP

SETTINGS = {**DEMO_SETTINGS, "batch_size": 8}


def build_model(n_classes):
    return VGGGAP(nf=2, n_classes=n_classes)
"""
SPEC_DIR = "specs_train_v1"
MAX_LEN = 1500
CARRY_FRAMES = 800  # --prepare keeps this much of each clip
QUICK_MAX_LEN = 400  # --quick: whole-clip validation at 400 frames (fp16 on a CPU is emulated, and slow)
# tolerances where the device's kernels round differently from the CPU's (cuDNN picks its algorithms)
POSTERIOR_ATOL = {"float32": 1e-4, "bf16": 3e-2, "fp16": 1e-2}
WEIGHT_RTOL = 1e-3


max_len, model_file = MAX_LEN, MODEL  # frames per clip (train.py --max_len) and the network: --quick makes both small


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def interrupted_at(epoch: int):
    """A run that stops as if killed when it would begin `epoch`, its checkpoint written."""
    begin = FoldRun.begin_epoch

    def begin_or_stop(self, e):
        if e == epoch:
            raise Interrupted
        return begin(self, e)

    FoldRun.begin_epoch = begin_or_stop
    try:
        yield
    finally:
        FoldRun.begin_epoch = begin


def train_run(data_root: Path, exp_root: Path, device: str, *extra: str) -> None:
    argv = ["--model", model_file, "--spec_dir", SPEC_DIR, "--max_len", str(max_len), "--data_root", str(data_root),
            "--exp_root", str(exp_root), "--device", device, "--threads", "2", *extra]
    with contextlib.redirect_stdout(io.StringIO()):  # each epoch's line: the summary says what matters
        train.main(train.parse_args(argv))


def checkpoint(exp_root: Path, fold: int = 1, tag: str = "it0") -> dict:
    return torch.load(paths.checkpoint_path(exp_root, model_file, fold, tag), map_location="cpu", weights_only=True)


def max_weight_difference(a: dict, b: dict) -> float:
    """The largest difference between two checkpoints' weights, relative to each tensor's scale."""
    return max(float((a["model"][k].float() - b["model"][k].float()).abs().max()
                     / (a["model"][k].float().abs().max() + 1e-8)) for k in a["model"])


# ---- the checks ------------------------------------------------------------------------------------------------

def check_data_path(data_root: Path, device: torch.device, quick: bool) -> str:
    folds = load_folds(data_root)
    specs = load_spectrograms(data_root / SPEC_DIR, list(folds["fname"]), max_len)
    host, dev = HostExcerpts(specs, device), DeviceExcerpts(specs, device)
    excerpt_len, batch = model_settings(load_model_file(model_file))["excerpt_len"], 16
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3 if quick else 20):  # both paths take the same host draws, in the order a step draws them
        draws = []
        for rng in (rng_a, rng_b):
            idx = rng.integers(0, len(specs), batch)
            draws.append((idx, draw_starts(rng, batch, max_len, excerpt_len), mixup_weights(rng, batch, 0.3)))
        (ia, sa, la), (ib, sb, lb) = draws
        check(np.array_equal(ia, ib) and np.array_equal(sa, sb) and np.array_equal(la, lb), "draws differ")
        a, b = host.cut(ia, sa, excerpt_len), dev.cut(ib, sb, excerpt_len)
        check(torch.equal(a.cpu(), b.cpu()), "device excerpts differ from the host's")
    return f"{3 if quick else 20} batches of {batch}: indices, starts, mixup weights and excerpts equal"


def check_precision(data_root: Path, work: Path, device: str, amp: str) -> str:
    unbroken, resumed = work / f"{amp}_unbroken", work / f"{amp}_resumed"
    train_run(data_root, unbroken, device, "--fold", "1", "--epochs", "3", "--amp", amp)
    with interrupted_at(2), contextlib.suppress(Interrupted):
        train_run(data_root, resumed, device, "--fold", "1", "--epochs", "3", "--amp", amp)
    train_run(data_root, resumed, device, "--fold", "1", "--epochs", "3", "--amp", amp)
    a, b = checkpoint(unbroken), checkpoint(resumed)
    losses = [row["train_loss"] for row in a["history"]]
    check(all(np.isfinite(losses)), f"{amp}: a training loss is not finite: {losses}")
    # mixup makes one epoch's loss noisy: falling means some later epoch below the first
    check(min(losses[1:]) < losses[0], f"{amp}: the training loss did not fall below its first epoch's: {losses}")
    if amp == "fp16":
        check(a.get("scaler") is not None, "fp16: the checkpoint holds no gradient-scaler state")
    diff = max_weight_difference(a, b)
    check(diff <= WEIGHT_RTOL, f"{amp}: the resumed run's weights differ from the unbroken run's by {diff:.2e}")
    per_epoch = " ".join(f"{v:.3f}" for v in losses)
    return f"loss per epoch {per_epoch}; resumed vs unbroken weights within {diff:.1e} (relative)"


def check_compiled_resume(data_root: Path, work: Path, device: str) -> str:
    exp = work / "compiled"
    with interrupted_at(1), contextlib.suppress(Interrupted):
        train_run(data_root, exp, device, "--fold", "1", "--epochs", "2", "--compile", "--channels_last")
    train_run(data_root, exp, device, "--fold", "1", "--epochs", "2")  # eagerly, default layout
    history = checkpoint(exp)["history"]
    check(len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history), f"history {history}")
    return "compiled channels_last epoch 1, then epoch 2 eager: finished, finite"


def check_folds_in_one_process(data_root: Path, work: Path, device: str) -> str:
    for k in (1, 2):
        train_run(data_root, work / "separate", device, "--fold", str(k), "--epochs", "1", "--seed", "5")
    train_run(data_root, work / "shared", device, "--fold", "1", "2", "--epochs", "1", "--seed", "5")
    diff = max(max_weight_difference(checkpoint(work / "separate", k), checkpoint(work / "shared", k))
               for k in (1, 2))
    check(diff <= WEIGHT_RTOL, f"folds in one process differ from separate runs by {diff:.2e}")
    return f"2 folds x 1 epoch: weights within {diff:.1e} (relative) of separate runs"


def check_posteriors(data_root: Path, device: torch.device) -> str:
    folds = load_folds(data_root)
    fnames = list(folds["fname"][:24])
    specs = load_spectrograms(data_root / SPEC_DIR, fnames, max_len)
    module = load_model_file(model_file)
    torch.manual_seed(3)
    model = build_network(module, int(folds["label"].nunique())).eval()
    excerpt_len = model_settings(module)["excerpt_len"]
    cpu = torch.device("cpu")
    out = {}
    for where in (cpu, device):
        model.to(where)
        logits = predict_logits(model, specs, max_len, 8, where)
        excerpts = predict_excerpts(model, specs, max_len, excerpt_len, 5, where, np.random.default_rng(1))
        out[where.type] = (torch.softmax(torch.from_numpy(logits).double(), 1).numpy(), excerpts)
    (whole_a, exc_a), (whole_b, exc_b) = out["cpu"], out[device.type]
    d_whole, d_exc = float(np.abs(whole_a - whole_b).max()), float(np.abs(exc_a - exc_b).max())
    tol = POSTERIOR_ATOL["float32"]
    check(d_whole <= tol and d_exc <= tol, f"posteriors differ from the CPU's by {max(d_whole, d_exc):.2e}")
    return f"{len(fnames)} clips: whole-clip posteriors within {d_whole:.1e}, 5-excerpt means within {d_exc:.1e}"


def check_end_to_end(data_root: Path, work: Path, device: str) -> str:
    exp = work / "end_to_end"
    started = time.perf_counter()
    train_run(data_root, exp, device, "--fold", "1", "--epochs", "2")
    seconds = time.perf_counter() - started
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        eval_script.main(eval_script.parse_args(["--model", model_file, "--fold", "1", "--set", "valid", "--data_root",
                                                 str(data_root), "--exp_root", str(exp), "--device", device]))
    summary = [line for line in out.getvalue().splitlines() if "MAP@3" in line or "accuracy" in line.lower()]
    history = checkpoint(exp)["history"]
    check(len(history) == 2, f"{len(history)} epochs trained, not 2")
    return (f"2 epochs of fold 1 in {seconds:.0f} s (valid acc {history[-1]['valid_acc']:.3f}); eval.py: "
            + "; ".join(s.strip() for s in summary[-2:]))


def check_bundle(work: Path, device: torch.device) -> str:
    """The end-to-end run's model as a bundle tags signals on the device as on the CPU, and how fast. (The tagger
    computes spectrograms from audio: it needs librosa and soundfile, which a bare GPU machine may lack.)"""
    from utils.tagging import Tagger, bundle_member, make_bundle, save_bundle

    bundle = work / "bundle.pt"
    save_bundle(bundle, make_bundle([bundle_member(model_file, paths.params_path(work / "end_to_end", model_file,
                                                                                  1, "it0"))]))
    rng = np.random.default_rng(0)
    signals = [0.1 * rng.standard_normal(32000 * 3).astype(np.float32) for _ in range(8)]
    probs, rate = {}, 0.0
    for where in ("cpu", str(device)):
        tagger = Tagger.from_bundle(bundle, where)
        started = time.perf_counter()
        probs[where] = np.stack([tagger.tag(x, 32000) for x in signals])
        rate = len(signals) / (time.perf_counter() - started)
    diff = float(np.abs(probs["cpu"] - probs[str(device)]).max())
    check(diff <= POSTERIOR_ATOL["float32"], f"the bundle's posteriors differ from the CPU's by {diff:.2e}")
    return f"{len(signals)} 3-s signals: posteriors within {diff:.1e} of the CPU's; {rate:.1f} files/s on {device}"


def full_ensemble_rate(work: Path, device: torch.device) -> str:
    """Files/s of the seed's whole ensemble (three networks x four folds, random weights: speed does not depend on
    them) tagging 4-second signals on the device, spectrograms included."""
    from benchmarks.tagging import random_bundle
    from utils.tagging import Tagger

    members = [(m, v, 3000) for m, v in (("models/vgg_gap_spec2.py", 2), ("models/vgg_gap_spec1_1.py", 1),
                                         ("models/vgg_gap_spec1_2.py", 1)) for _ in range(4)]
    tagger = Tagger.from_bundle(random_bundle(work / "full_bundle.pt", members, 41), str(device))
    rng = np.random.default_rng(0)
    signals = [0.1 * rng.standard_normal(32000 * 4).astype(np.float32) for _ in range(8)]
    tagger.tag(signals[0], 32000)  # cuDNN's search and the first allocations
    started = time.perf_counter()
    for x in signals:
        tagger.tag(x, 32000)
    rate = len(signals) / (time.perf_counter() - started)
    return f"{len(members)} members, {len(signals)} 4-s signals: {rate:.2f} files/s"


# ---- the figures -----------------------------------------------------------------------------------------------

def figures(device: str, quick: bool) -> tuple[str, str]:
    """benchmarks.train_step's figures on this device: (one-line result, its whole output)."""
    flags = (["--model", model_file, "--batch_size", "8", "--steps", "2", "--warmup", "1", "--n_clips", "48",
              "--folds", "2", "--amp", "off", "--no_compile"] if quick else ["--steps", "20", "--warmup", "3"])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--device", device, *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise CheckFailed(f"benchmarks.train_step failed: {proc.stderr.strip().splitlines()[-1:]}")
    last = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith(("fastest", "all 63"))]
    return "; ".join(last), proc.stdout


# ---- carrying a small data root --------------------------------------------------------------------------------

def prepare(data_root: Path, out: Path, per_class: int, max_classes: int) -> None:
    """A data root small enough to travel (the device tool carries 64 MiB): for `max_classes` classes, per fold,
    `per_class` verified and as many unverified clips, train.csv, folds.csv and their SPEC_DIR spectrograms (cut to
    CARRY_FRAMES; training tiles them to max_len) with its manifest."""
    folds = load_folds(data_root)
    classes = sorted(folds["label"].unique())[:max_classes]
    keep = folds[folds["label"].isin(classes)].groupby(["fold", "label", "verified"], group_keys=False).head(per_class)
    if out.exists():
        raise SystemExit(f"error: {out} exists; give a new folder")
    (out / SPEC_DIR).mkdir(parents=True)
    train_csv = pd.read_csv(data_root / paths.TRAIN_CSV, dtype=str, keep_default_na=False)
    train_csv[train_csv["fname"].isin(keep["fname"])].to_csv(out / paths.TRAIN_CSV, index=False)
    keep.to_csv(out / paths.FOLDS_CSV, index=False)
    shutil.copy2(data_root / SPEC_DIR / paths.MANIFEST_NAME, out / SPEC_DIR / paths.MANIFEST_NAME)
    for fname in keep["fname"]:
        npy = Path(fname).with_suffix(".npy").name
        spec = np.load(data_root / SPEC_DIR / npy)
        np.save(out / SPEC_DIR / npy, spec[:, :CARRY_FRAMES])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    if size > 60:
        shutil.rmtree(out)
        raise SystemExit(f"error: {size:.0f} MiB would not travel (64 MiB in all); lower --per_class or --max_classes")
    print(f"wrote {out}: {len(keep)} clips, {keep['label'].nunique()} classes, {folds['fold'].nunique()} folds, "
          f"{size:.1f} MiB")


# ---- main ------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help=f"a data root with train.csv, folds and {SPEC_DIR}/")
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps: the suite's run on a CPU")
    parser.add_argument("--out", default="gpu_check.txt", help="where the summary and every section's output go")
    parser.add_argument("--prepare", metavar="OUT", default=None,
                        help="write a small copy of --data_root to carry to the GPU machine, and stop")
    parser.add_argument("--per_class", type=int, default=2, help="--prepare: clips per fold, class and flag")
    parser.add_argument("--max_classes", type=int, default=10, help="--prepare: classes kept")
    args = parser.parse_args()
    if args.prepare:
        prepare(Path(args.data_root), Path(args.prepare), args.per_class, args.max_classes)
        return 0
    device = pick_device(args.device)
    work = Path(args.out).resolve().parent / f".{Path(args.out).name}.work"
    shutil.rmtree(work, ignore_errors=True)
    data_root = Path(args.data_root)
    if args.quick:  # one clip per fold, class and flag, shorter clips: the same paths in seconds
        global max_len, model_file
        max_len, model_file = QUICK_MAX_LEN, str(work / "gpu_check_tiny.py")
        prepare(data_root, work / "data", 1, 5)
        save_text(model_file, QUICK_MODEL)
        data_root = work / "data"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (f"fsdtag GPU check on {device} ({name}), torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d %H:%M')}{', quick' if args.quick else ''}")
    print(header, flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows: list[tuple[str, str, str]] = []
    outputs: list[str] = []
    dev = str(device)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("device data path = host path", lambda: check_data_path(data_root, device, args.quick)),
        ("bf16: trains, resumes", lambda: check_precision(data_root, work, dev, "bf16")),
        ("fp16 + scaler: trains, resumes", lambda: check_precision(data_root, work, dev, "fp16")),
        ("2 folds in one process = separate", lambda: check_folds_in_one_process(data_root, work, dev)),
        ("posteriors = the CPU's", lambda: check_posteriors(data_root, device)),
        ("end to end: train 2 epochs, eval", lambda: check_end_to_end(data_root, work, dev)),
        ("a bundle tags as on the CPU", lambda: check_bundle(work, device)),
    ]
    if not args.quick:  # compiling takes minutes on a CPU (the suite covers it in tests/test_gpu_options.py), and
        # the full ensemble's twelve networks as long
        checks.insert(3, ("compiled channels_last resumes eagerly", lambda: check_compiled_resume(data_root, work,
                                                                                                   dev)))
        checks.append(("tagging, the full 3-model ensemble", lambda: full_ensemble_rate(work, device)))
    for label, run in checks:
        started = time.perf_counter()
        try:
            result, detail = "ok", run()
        except CheckFailed as e:
            result, detail = "FAILED", str(e)
        except Exception as e:  # a CUDA path that breaks: the table says where, the output file has the traceback
            result, detail = "ERROR", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            outputs.append(f"--- {label}\n{traceback.format_exc()}")
        rows.append((label, result, f"{detail} [{time.perf_counter() - started:.0f} s]"))
        print(f"{label:40s} {result:6s} {rows[-1][2]}", flush=True)
    try:
        line, output = figures(dev, args.quick)
        rows.append(("figures (benchmarks.train_step)", "ok", line))
        outputs.append(f"--- benchmarks.train_step\n{output}")
    except (CheckFailed, subprocess.TimeoutExpired) as e:
        rows.append(("figures (benchmarks.train_step)", "FAILED", str(e)))
    table = "\n".join(f"{label:40s} {result:6s} {detail}" for label, result, detail in rows)
    report = f"{header}\n\n{table}\n\n" + "\n".join(outputs)
    save_text(args.out, report)
    print(f"\n{table}\n\nwrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(result == "ok" for _, result, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
