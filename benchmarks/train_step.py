"""What a training step costs, and what the full 63-step schedule would take on this machine. Run by hand:

    python -m benchmarks.train_step                          # a GPU if there is one, else the CPU
    python -m benchmarks.train_step --device cpu --batch_size 8 --steps 3 --no_compile   # a quick CPU look

Prints, in one run, on synthetic spectrograms with the length spread of FSDKaggle2018 clips (random networks:
only speed is measured):
1. data path capacity alone: excerpts/s cut on the host (numpy, then copied) against gathered on the device;
2. train.py's own step (utils.fold_run.FoldRun.step) for vgg_gap_spec1_2 at the writeup's batch size: samples/s
   in eager float32 against mixed precision, channels_last and torch.compile, each with the share of the step
   the data takes, the peak memory and the achieved TFLOP/s (against the chip's bf16 peak where known);
3. folds on one device: total samples/s of separate fold processes stepping at the same time against one process
   stepping the fold models in turn (train.py --fold 1 2 3 4);
4. validation (whole clips) and self-verification (25 excerpts per clip) rates, and from all of these the
   projected time of the full schedule on FSDKaggle2018 (pretraining 500 epochs, 10 x (self-verification +
   30 fine-tuning epochs), three networks, four folds)."""

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import chain, count
from pathlib import Path

import numpy as np
import torch

from utils.device import AMP_DTYPES, pick_device, resolve_amp
from utils.errors import StepFailed
from utils.excerpt_source import DeviceExcerpts, HostExcerpts, draw_starts
from utils.fold_run import FoldData, FoldRun
from utils.model_files import load_model_file, model_settings
from utils.paths import REPO

# FSDKaggle2018's training set and the seed's schedule (utils/launch/schedule.py, preset full)
N_CLIPS, N_VERIFIED, N_UNVERIFIED, N_CLASSES, FOLDS = 9473, 3710, 5763, 41, 4
PRETRAIN_EPOCHS, ITERATIONS, FINE_TUNE_EPOCHS, K_PER_CLASS, N_EXCERPTS = 500, 10, 30, 40, 25
FULL_MODELS = ("models/vgg_gap_spec2.py", "models/vgg_gap_spec1_1.py", "models/vgg_gap_spec1_2.py")
MAX_LEN, BINS = 3000, 128
# vgg_gap_spec1_2 (64 base filters) costs 29.0 GFLOP per 384-frame training sample, forward and backward; other
# widths scale with the square of the base filters, other excerpts with their length
GFLOP_PER_SAMPLE, GFLOP_WIDTH, GFLOP_FRAMES = 29.0, 64, 384
# dense bf16 tensor-core peaks (TFLOP/s, vendors' data sheets), to set the achieved rate against
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}


def synthetic_specs(n_clips: int, seed: int = 0) -> list[np.ndarray]:
    """Frame-major blocks like the spectrogram store's, viewed as (bins, frames); lengths as FSDKaggle2018's clips
    at hop 192 (median ~700 frames, clipped to 3000)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(6.5, 0.8, n_clips), 50, MAX_LEN).astype(int)
    return [rng.standard_normal((n, BINS), dtype=np.float32).T for n in lengths]


def achieved_tflops(samples_s: float, width: int, excerpt_len: int, device_name: str) -> str:
    """The step's arithmetic rate, and its share of the chip's bf16 peak where that is known."""
    tflops = samples_s * GFLOP_PER_SAMPLE * (width / GFLOP_WIDTH) ** 2 * excerpt_len / GFLOP_FRAMES / 1000
    peak = next((v for k, v in BF16_PEAK.items() if k in device_name), None)
    return f"{tflops:6.2f} TFLOP/s" + (f" ({100 * tflops / peak:.1f}% of {peak:.0f} bf16)" if peak else "")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS


def data_rate(source: HostExcerpts | DeviceExcerpts, n_clips: int, batch: int, excerpt_len: int, steps: int,
              device: torch.device) -> float:
    """Excerpts/s of cutting batches alone (as a step draws them), device work included."""
    rng = np.random.default_rng(1)
    for _ in range(2):
        source.cut(rng.integers(0, n_clips, batch), draw_starts(rng, batch, MAX_LEN, excerpt_len), excerpt_len)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        source.cut(rng.integers(0, n_clips, batch), draw_starts(rng, batch, MAX_LEN, excerpt_len), excerpt_len)
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def fold_run(model_file: str, source: HostExcerpts | DeviceExcerpts, n_clips: int, device: torch.device,
             amp: str | None, channels_last: bool, compile_: bool, batch: int, fold: int = 1) -> FoldRun:
    """A FoldRun as train.py sets one up, on the synthetic clips, writing nothing (end_epoch is never called)."""
    settings = {**model_settings(load_model_file(model_file)), "batch_size": batch}
    rng = np.random.default_rng(fold)
    rows = rng.permutation(n_clips)
    config = {"amp": amp or False, "max_len": MAX_LEN, "settings": settings, "exp_root": "/nonexistent",
              "base_lr": settings["lr"], "epochs": 1, "decay_from": 1, "seed": fold, "channels_last": channels_last,
              "mixup_alpha": settings["mixup_alpha"], "classes": [str(c) for c in range(N_CLASSES)],
              "valid_batch_size": None, "model": model_file, "tag": "bench", "fold": fold, "folds_in_process": 1,
              "compile": compile_, "world_size": 1, "stop_rule": "fixed", "patience": 0, "final_decay_epochs": 0}
    torch.manual_seed(fold)
    model = load_model_file(model_file).build_model(N_CLASSES).to(device)
    labels = rng.integers(0, N_CLASSES, n_clips)
    return FoldRun(config, model, FoldData(rows, labels[rows], rows[:8], labels[rows[:8]]), source, device)


def step_rate(runs: list[FoldRun], steps: int, warmup: int, device: torch.device,
              before_timing: Callable[[], None] = lambda: None) -> float:
    """Total samples/s of the runs stepped in turn, batch by batch, as train.py's loop does (no sync per step).
    Epochs follow one another as long as the steps ask."""
    def endless(run: FoldRun):  # a function, so that each generator keeps its own run
        return chain.from_iterable(run.begin_epoch(epoch) for epoch in count())

    batches = [endless(run) for run in runs]

    def do(n: int) -> None:
        for _ in range(n):
            for run, it in zip(runs, batches, strict=True):
                run.step(*next(it))

    do(warmup)
    sync(device)
    before_timing()
    t0 = time.perf_counter()
    do(steps)
    sync(device)
    return steps * sum(run.config["settings"]["batch_size"] for run in runs) / (time.perf_counter() - t0)


@torch.no_grad()
def forward_rate(run: FoldRun, frames: int, batch: int, steps: int, device: torch.device) -> float:
    """Clips (of `frames` frames) per second through the eval-mode network, as validation and self-verification
    run it."""
    run.model.eval()
    rng = np.random.default_rng(2)
    n_clips = len(run.train_rows)

    def do(n: int) -> None:
        for _ in range(n):
            x = run.source.cut(rng.integers(0, n_clips, batch), draw_starts(rng, batch, MAX_LEN, frames), frames)
            with torch.autocast(device.type, dtype=run.amp, enabled=run.amp is not None):
                run.model(x)

    do(1)
    sync(device)
    t0 = time.perf_counter()
    do(steps)
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def make_source(specs: list[np.ndarray], device: torch.device, on_device: bool, amp: str | None):
    dtype = AMP_DTYPES[amp] if amp else torch.float32
    return DeviceExcerpts(specs, device, dtype) if on_device else HostExcerpts(specs, device)


def worker(args: argparse.Namespace, device: torch.device) -> None:
    """One fold process of section 3: steps its model and prints its samples/s as JSON."""
    specs = synthetic_specs(args.n_clips)
    opts = json.loads(args.worker)
    run = fold_run(args.model, make_source(specs, device, opts["on_device"], opts["amp"]), len(specs), device,
                   opts["amp"], opts["channels_last"], opts["compile"], args.batch_size, fold=opts["fold"])

    def wait_for_the_others() -> None:  # every process warmed up (compiled) before any starts its clock
        print("ready", flush=True)
        sys.stdin.readline()

    print(json.dumps({"samples_s": step_rate([run], args.steps, args.warmup, device, wait_for_the_others)}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/vgg_gap_spec1_2.py", help="the network of sections 1-3")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the model file's (100)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per figure")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, cudnn search)")
    parser.add_argument("--n_clips", type=int, default=2000, help="synthetic training clips (host RAM: ~0.5 MB each)")
    parser.add_argument("--folds", type=int, default=FOLDS, help="fold models of section 3")
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                        help="mixed precision of the amp variants (auto: bf16 where the device has it); off leaves "
                             "them out (bf16 convolutions are ~20x slower on CPUs without bf16 instructions)")
    parser.add_argument("--no_compile", action="store_true", help="leave torch.compile out (minutes on a CPU)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: a section-3 fold process
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch_size = args.batch_size or model_settings(load_model_file(args.model))["batch_size"]
    if args.worker:
        worker(args, device)
        return
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}; {Path(args.model).stem}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup}", flush=True)
    specs = synthetic_specs(args.n_clips)
    excerpt_len = model_settings(load_model_file(args.model))["excerpt_len"]
    amp = resolve_amp(args.amp, device) if args.amp != "off" else None

    print("\n1. data path capacity (excerpts/s, cutting alone)")
    host_rate = data_rate(HostExcerpts(specs, device), len(specs), args.batch_size, excerpt_len, args.steps, device)
    device_rate = data_rate(DeviceExcerpts(specs, device), len(specs), args.batch_size, excerpt_len, args.steps,
                            device)
    print(f"   host path   {host_rate:9.0f}\n   device path {device_rate:9.0f}  ({device_rate / host_rate:.1f}x)",
          flush=True)
    data_s = {False: args.batch_size / host_rate, True: args.batch_size / device_rate}  # seconds per batch

    print(f"\n2. the training step ({'device' if device.type == 'cuda' else 'host'} data path)")
    on_device = device.type == "cuda"
    variants = [("eager float32", None, False, False), ("channels_last", None, True, False)]
    if amp:
        variants += [(amp, amp, False, False), (f"{amp} + channels_last", amp, True, False)]
    if not args.no_compile:
        variants.append((f"{amp + ' + ' if amp else ''}channels_last + compile", amp, True, True))
    rates: dict[str, float] = {}
    best_run = None
    for label, v_amp, cl, comp in variants:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the previous variant's store and activations are gone
            torch.cuda.reset_peak_memory_stats(device)
        run = fold_run(args.model, make_source(specs, device, on_device, v_amp), len(specs), device, v_amp, cl, comp,
                       args.batch_size)
        rates[label] = step_rate([run], args.steps, args.warmup, device)
        share = data_s[on_device] / (args.batch_size / rates[label])
        print(f"   {label:34s} {rates[label]:8.1f} samples/s ({rates[label] / rates['eager float32']:.2f}x)  "
              f"data {100 * share:4.1f}% of the step  peak {peak_mib(device):7.0f} MiB  "
              f"{achieved_tflops(rates[label], run.model.features[0].out_channels, excerpt_len, name)}", flush=True)
        if rates[label] == max(rates.values()):
            best_run, best_label, (b_amp, b_cl, b_comp) = run, label, (v_amp, cl, comp)
        del run
    best_rate = rates[best_label]
    print(f"   fastest: {best_label}; the host path would take "
          f"{100 * data_s[False] / (args.batch_size / best_rate):.1f}% of its step", flush=True)

    print(f"\n3. {args.folds} folds on one device, {best_label}")
    one = step_rate([fold_run(args.model, best_run.source, len(specs), device, b_amp, b_cl, b_comp, args.batch_size,
                              fold=k) for k in range(1, args.folds + 1)], args.steps, args.warmup, device)
    threads = max(1, torch.get_num_threads() // args.folds) if device.type == "cpu" else None
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.train_step", "--model", args.model,
                               "--batch_size", str(args.batch_size), "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--n_clips", str(args.n_clips), "--device", str(device),
                               *(["--threads", str(threads)] if threads else []),
                               "--worker", json.dumps({"on_device": on_device, "amp": b_amp, "channels_last": b_cl,
                                                       "compile": b_comp, "fold": k})],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k in range(1, args.folds + 1)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise StepFailed("a fold process of section 3 failed before its timed steps")
    for p in procs:  # all start their timed steps together
        p.stdin.write("go\n")
        p.stdin.flush()
    separate = sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["samples_s"] for p in procs)
    print(f"   {args.folds} processes at once{f' ({threads} threads each)' if threads else ''}: {separate:8.1f} "
          f"samples/s in all\n   one process, models in turn: {one:8.1f} samples/s ({one / separate:.2f}x)",
          flush=True)

    print("\n4. projection of the full schedule on FSDKaggle2018 (this machine, one device)")
    valid_batch = best_run.valid_batch_size
    valid_rate = forward_rate(best_run, MAX_LEN, valid_batch, max(2, args.steps // 4), device)
    verify_rate = forward_rate(best_run, excerpt_len, N_EXCERPTS * 4, max(2, args.steps // 4), device)
    print(f"   validation {valid_rate:.1f} whole clips/s (batch {valid_batch}); self-verification "
          f"{verify_rate:.0f} excerpts/s", flush=True)
    train_rate = max(best_rate, one, separate)  # the fastest way of running folds measured above
    n_train, n_valid = N_CLIPS * 3 // 4, N_VERIFIED // 4
    n_fine = N_VERIFIED * 3 // 4 + K_PER_CLASS * N_CLASSES  # verified clips plus at most one cap of accepted ones
    hours = 0.0
    for model_file in FULL_MODELS:
        # per sample, a network costs as its convolutions: measured for this one, scaled by width for the others
        width = load_model_file(model_file).build_model(N_CLASSES).features[0].out_channels
        scale = (width / best_run.model.features[0].out_channels) ** 2
        train_samples = PRETRAIN_EPOCHS * n_train + ITERATIONS * FINE_TUNE_EPOCHS * n_fine
        valid_clips = (PRETRAIN_EPOCHS + ITERATIONS * FINE_TUNE_EPOCHS) * n_valid
        seconds = scale * (FOLDS * (train_samples / train_rate + valid_clips / valid_rate)
                           + ITERATIONS * N_UNVERIFIED * N_EXCERPTS / verify_rate)
        hours += seconds / 3600
        print(f"   {Path(model_file).stem:16s} {seconds / 3600:8.1f} h", flush=True)
    print(f"   all 63 steps     {hours:8.1f} h  ({hours / 24:.1f} days; the seed: ~2 days on four GTX 1080 Ti)")


if __name__ == "__main__":
    main()
