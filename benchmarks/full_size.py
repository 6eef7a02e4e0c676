"""FSDKaggle2018 at full size: spectrogram preparation, memory of fold processes, a training epoch,
self-verification and the evaluation of every test clip. Run by hand on a full-size build:

    python make_demo_dataset.py --size full --data_root /data/full
    python prepare_spectrograms.py --audio_path /data/full/audio_train --out_dir /data/full/specs_train_v2 \\
        --spec_version 2 --dump          # and the same for audio_test -> specs_test_v2
    python -m benchmarks.full_size --data_root /data/full

Every figure comes with a baseline from the same run:
- preparation: files/s of --prep_files clips with all cores against one worker;
- memory: fold processes loading fold k's training and validation clips as train.py does (each process then
  reads every frame it holds, as an epoch does), today's shared store against the former loading (every process
  np.load()s its own copy; measured in one process, as four would fill the machine). Reported: peak RSS per
  process (which counts shared pages in every process that maps them) and the sum of PSS (each shared page split
  among its users: the memory really used), against one copy of the clipped spectrograms;
- training: batch assembly from the store against in-RAM copies, and one real epoch of fold 1;
- self-verification: clips/s with the excerpts of many clips per forward pass against one clip per pass;
- evaluation: all test clips predicted (eval.py's predict_clips), clips/s.
Networks have random weights: only speed is measured."""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from utils.paths import REPO

# A child process: load fold k's clips as train.py does (store or copies), touch every frame, report memory.
FOLD_CHILD = """
import json, resource, sys
import numpy as np
from pathlib import Path
import torch  # a fold process holds torch, as train.py does
from utils.dataset_csv import read_train_csv
from utils.folds import load_folds, split_fold
from utils.spec_data import load_spectrograms

data_root, spec_dir, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[5]
fold, max_len = int(sys.argv[3]), int(sys.argv[4])
train_part, valid, _ = split_fold(read_train_csv(data_root / "train.csv"), load_folds(data_root), fold)
fnames = list(train_part["fname"]) + list(valid["fname"])
if mode == "store":
    specs = load_spectrograms(data_root / spec_dir, fnames, max_len)
else:  # the former loading: every process reads its own copy of each clip
    specs = [np.ascontiguousarray(np.load(data_root / spec_dir / (Path(f).stem + ".npy"))[:, :max_len],
                                  dtype=np.float32) for f in fnames]
total = sum(float(s.sum()) for s in specs)  # an epoch reads every frame
print("loaded", flush=True)
sys.stdin.readline()  # measured only once every process has loaded: a page's PSS is split among its users then
pss = sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("Pss:"))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "pss_mb": pss / 1024, "n_clips": len(specs),
                  "frames": int(sum(s.shape[1] for s in specs)), "checksum": total}), flush=True)
sys.stdin.readline()  # stay alive until the others have measured too
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_preparation(data_root: Path, n_files: int, jobs: int) -> dict:
    from utils.spectrogram_cache import prepare

    files = sorted((data_root / "audio_train").glob("*.wav"))
    files = random.Random(0).sample(files, min(n_files, len(files)))
    for f in files:  # both runs read the audio from the page cache
        f.read_bytes()
    out = {}
    for label, j in (("1 worker", 1), (f"{jobs} workers", jobs)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            results = prepare(files, 2, True, Path(tmp), jobs=j, progress=False)
            out[label] = len(files) / (time.perf_counter() - t0)
            assert sum(r.status == "written" for r in results) >= len(files) - 3
    return out


def bench_memory(data_root: Path, spec_dir: str, max_len: int, n_procs: int) -> dict:
    from utils.spec_store import open_store

    open_store(data_root / spec_dir, progress=True)  # built once beforehand, as prepare_spectrograms does
    out = {}
    # four processes of copies would need four copies of the data: at full size nearly all of a 24 GB machine,
    # so the former loading is measured in one process and its four-process total is four times that
    for mode, counts in (("copies", (1,)), ("store", (1, n_procs))):
        for n in counts:
            procs = [subprocess.Popen([sys.executable, "-c", FOLD_CHILD, str(data_root), spec_dir, str(k % 4 + 1),
                                       str(max_len), mode], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True) for k in range(n)]
            # Every child loads and reads its clips, then waits; all measure together, then all exit.
            for p in procs:
                assert p.stdout.readline().strip() == "loaded"
            for p in procs:
                p.stdin.write("\n")
                p.stdin.flush()
            reports = [json.loads(p.stdout.readline()) for p in procs]
            for p in procs:
                p.stdin.write("\n")
                p.stdin.close()
                p.wait()
            out[(mode, n)] = reports
            print(f"  {mode:6s} x{n}: peak RSS " + ", ".join(f"{r['peak_rss_mb']:.0f}" for r in reports)
                  + f" MB; PSS sum {sum(r['pss_mb'] for r in reports):.0f} MB", flush=True)
    return out


def one_copy_mb(data_root: Path, spec_dir: str, max_len: int) -> float:
    from utils.spec_store import open_store

    store = open_store(data_root / spec_dir)
    return int(np.minimum(store.lengths, max_len).sum()) * store.frames.shape[1] * 4 / 2**20


def bench_batches(data_root: Path, spec_dir: str, max_len: int, n_batches: int = 200) -> dict:
    from utils.dataset_csv import read_train_csv
    from utils.spec_data import batch_excerpts, load_spectrograms

    fnames = list(read_train_csv(data_root / "train.csv")["fname"])[:2000]
    views = load_spectrograms(data_root / spec_dir, fnames, max_len)
    copies = [np.array(v) for v in views]
    out = {}
    for label, specs in (("in-RAM copies", copies), ("store", views)):
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            batch_excerpts([specs[i] for i in rng.integers(0, len(specs), 32)], max_len, 384, rng)
        out[label] = (time.perf_counter() - t0) / n_batches * 1000
    return out


def bench_epoch(data_root: Path, spec_dir: str, max_len: int, model: str) -> dict:
    import train

    with tempfile.TemporaryDirectory() as exp:
        t0 = time.perf_counter()
        log = train.train(train.parse_args(["--model", model, "--fold", "1", "--spec_dir", spec_dir, "--data_root",
                                            str(data_root), "--exp_root", exp, "--max_len", str(max_len),
                                            "--epochs", "1", "--device", "cpu"]))
        return {"total_s": time.perf_counter() - t0, "epoch_s": log["history"][0]["seconds"],
                "n_train": log["config"]["n_train"], "n_valid": log["config"]["n_valid"]}


def bench_self_verification(data_root: Path, spec_dir: str, max_len: int, model_file: str, n_clips: int) -> dict:
    import torch

    from utils.dataset_csv import read_train_csv
    from utils.device import pick_device
    from utils.model_files import load_model_file, model_settings
    from utils.predict import predict_excerpts
    from utils.self_verification import EXCERPTS_PER_PASS
    from utils.spec_data import load_spectrograms

    train = read_train_csv(data_root / "train.csv")
    fnames = list(train[train["manually_verified"] == 0]["fname"])[:n_clips]
    specs = load_spectrograms(data_root / spec_dir, fnames, max_len)
    module = load_model_file(model_file)
    settings = model_settings(module)
    device = pick_device(None)
    model = module.build_model(41).to(device)
    out, probs = {}, {}
    for label, batch in (("1 clip per pass (before)", 25), (f"{EXCERPTS_PER_PASS // 25} clips per pass",
                                                             EXCERPTS_PER_PASS)):
        t0 = time.perf_counter()
        probs[label] = predict_excerpts(model, specs, max_len, settings["excerpt_len"], 25, device,
                                        np.random.default_rng(0), batch_excerpts_max=batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[label] = len(specs) / (time.perf_counter() - t0)
    a, b = probs.values()
    out["max abs difference"] = float(np.abs(a - b).max())
    return out


def bench_evaluation(data_root: Path, spec_dir: str, max_len: int, model_file: str) -> dict:
    import torch

    from utils.dataset_csv import read_train_csv
    from utils.evaluation import class_prior, predict_clips, select_clips
    from utils.model_files import load_model_file, model_settings

    module = load_model_file(model_file)
    clips = select_clips(data_root, "test", spec_dir)
    classes = sorted(set(read_train_csv(data_root / "train.csv")["label"]))
    model = module.build_model(len(classes))
    t0 = time.perf_counter()
    _, missing = predict_clips(model, clips, max_len, model_settings(module)["valid_batch_size"],
                               torch.device("cpu"), class_prior(data_root / "train.csv", classes))
    seconds = time.perf_counter() - t0
    return {"clips": len(clips.fnames), "missing": int(missing.sum()), "seconds": seconds,
            "clips_per_s": len(clips.fnames) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help="a full-size build with specs_train_v2/, specs_test_v2/")
    parser.add_argument("--spec_dir", default="specs_train_v2")
    parser.add_argument("--max_len", type=int, default=3000)
    parser.add_argument("--model", default="models/vgg_gap_demo_v2.py", help="the network of the epoch and speeds")
    parser.add_argument("--full_model", default="models/vgg_gap_spec2.py",
                        help="a full network for the self-verification speed")
    parser.add_argument("--prep_files", type=int, default=300, help="clips timed for spectrogram preparation")
    parser.add_argument("--sv_clips", type=int, default=200, help="clips timed for self-verification")
    parser.add_argument("--procs", type=int, default=4, help="concurrent fold processes")
    parser.add_argument("--skip", nargs="*", default=[], choices=["prep", "memory", "batches", "epoch", "sv", "eval"])
    args = parser.parse_args()
    root = Path(args.data_root)
    print(f"{os.cpu_count()} CPU cores; data root {root}", flush=True)

    if "prep" not in args.skip:
        r = bench_preparation(root, args.prep_files, os.cpu_count() or 1)
        (a, va), (b, vb) = r.items()
        print(f"spectrogram preparation (v2, SoX): {a} {va:.1f} files/s; {b} {vb:.1f} files/s ({vb / va:.2f}x)",
              flush=True)
    if "memory" not in args.skip:
        copy_mb = one_copy_mb(root, args.spec_dir, args.max_len)
        print(f"one copy of the clipped training spectrograms (max_len {args.max_len}): {copy_mb:.0f} MB", flush=True)
        r = bench_memory(root, args.spec_dir, args.max_len, args.procs)
        copies, store = r[("copies", 1)][0], r[("store", 1)][0]
        many = r[("store", args.procs)]
        pss, before = sum(x["pss_mb"] for x in many), args.procs * copies["pss_mb"]
        print(f"memory of one fold process: copies (before) peak RSS {copies['peak_rss_mb']:.0f} MB, PSS "
              f"{copies['pss_mb']:.0f} MB; store peak RSS {store['peak_rss_mb']:.0f} MB, PSS {store['pss_mb']:.0f} MB",
              flush=True)
        print(f"memory of {args.procs} fold processes: copies (before, {args.procs} x one) {before:.0f} MB = "
              f"{before / copy_mb:.2f}x one copy; store: PSS sum {pss:.0f} MB = {pss / copy_mb:.2f}x one copy "
              f"({before / pss:.2f}x less; peak RSS per process "
              + ", ".join(f"{x['peak_rss_mb']:.0f}" for x in many) + " MB, shared pages counted in each)", flush=True)
    if "batches" not in args.skip:
        r = bench_batches(root, args.spec_dir, args.max_len)
        (a, va), (b, vb) = r.items()
        print(f"batch of 32 excerpts: {a} {va:.2f} ms, {b} {vb:.2f} ms ({va / vb:.2f}x)", flush=True)
    if "epoch" not in args.skip:
        r = bench_epoch(root, args.spec_dir, args.max_len, args.model)
        print(f"one training epoch of {Path(args.model).stem}, fold 1 ({r['n_train']} clips, then validation on "
              f"{r['n_valid']}): {r['epoch_s']:.1f} s; process total incl. loading {r['total_s']:.1f} s; "
              f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    if "sv" not in args.skip:
        # the full network is ~60x the demo's work per excerpt: fewer clips keep the CPU run short
        for model, n_clips in ((args.model, args.sv_clips), (args.full_model, max(10, args.sv_clips // 10))):
            r = bench_self_verification(root, args.spec_dir, args.max_len, model, n_clips)
            (a, va), (b, vb), (_, diff) = r.items()
            print(f"self-verification, {Path(model).stem}, 25 excerpts: {a} {va:.1f} clips/s; {b} {vb:.1f} clips/s "
                  f"({vb / va:.2f}x); posteriors within {diff:.1e}", flush=True)
    if "eval" not in args.skip:
        r = bench_evaluation(root, args.spec_dir, args.max_len, args.model)
        print(f"evaluation of every test clip with {Path(args.model).stem}: {r['clips']} clips "
              f"({r['missing']} without a spectrogram, prior-filled) in {r['seconds']:.1f} s = "
              f"{r['clips_per_s']:.1f} clips/s", flush=True)


if __name__ == "__main__":
    main()
