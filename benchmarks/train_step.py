"""Training-step throughput: samples per second, the share of each step spent waiting for data (cutting
excerpts from the RAM cache and moving them to the device), and peak memory.

python -m benchmarks.train_step --model models/vgg_gap_spec1_2.py --batch_size 100 --device cuda
Spectrograms are random arrays with the length spread of FSDKaggle2018 clips, held in RAM as train.py does."""

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from utils.model_files import load_model_file, model_settings
from utils.predict import pick_device
from utils.spec_data import batch_excerpts
from utils.training import mixup, soft_cross_entropy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/vgg_gap_spec1_2.py")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the model file's")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--n_clips", type=int, default=500)
    parser.add_argument("--max_len", type=int, default=3000)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    settings = model_settings(load_model_file(args.model))
    batch_size = args.batch_size or settings["batch_size"]
    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    specs = [rng.standard_normal((128, int(n)), dtype=np.float32)
             for n in np.clip(rng.lognormal(6.5, 0.8, args.n_clips), 50, args.max_len)]
    labels = rng.integers(0, 41, args.n_clips)
    model = load_model_file(args.model).build_model(41).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    data_s = total_s = 0.0
    for step in range(args.steps + 2):  # two warm-up steps
        sync()
        t0 = time.perf_counter()
        idx = rng.integers(0, args.n_clips, batch_size)
        x = torch.from_numpy(batch_excerpts([specs[i] for i in idx], args.max_len, settings["excerpt_len"], rng))
        x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x
        y = F.one_hot(torch.from_numpy(labels[idx]), 41).float().to(device)
        sync()
        t1 = time.perf_counter()
        x, y = mixup(x, y, settings["mixup_alpha"], rng)
        loss = soft_cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()
        t2 = time.perf_counter()
        if step >= 2:
            data_s += t1 - t0
            total_s += t2 - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"model {Path(args.model).stem}, batch {batch_size}, device {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    print(f"samples/s: {args.steps * batch_size / total_s:.1f}")
    print(f"step: {1000 * total_s / args.steps:.1f} ms, waiting for data: {100 * data_s / total_s:.1f} %")
    print(f"peak memory: {peak:.0f} MiB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
