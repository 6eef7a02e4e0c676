"""How fast the live tagger runs: ms per prediction, feature real-time factor, the prediction rate that keeps up.

    python -m benchmarks.tagger [--threads 2] [--repeats 30] [--stream_seconds 8] [--params FILE]

For the full model (models/vgg_gap_spec2_no_pp.py, 41 classes) and the demo model (models/vgg_gap_demo_no_pp.py)
on a 128 x window input, in one run: the plain eager forward (the baseline) against inference_mode +
channels_last, BatchNorm folded + traced and frozen (the tagger's torch backend) and ONNX Runtime (when installed).
Each variant's posteriors are compared with the baseline's. Without --params the weights are random (speed does
not depend on them). Then a file streamed in real time through the whole tagger with the fastest backend.
"""

import argparse
import os
import statistics
import time

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--repeats", type=int, default=30, help="timed forwards per variant (median reported)")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--predict_every_k", type=int, default=10)
    parser.add_argument("--stream_seconds", type=float, default=8.0,
                        help="seconds of real-time streaming per model for the end-to-end check (0: skip)")
    parser.add_argument("--models", nargs="+",
                        default=["models/vgg_gap_spec2_no_pp.py", "models/vgg_gap_demo_no_pp.py"])
    parser.add_argument("--params", default=None, help="trained params for the first model (default: random)")
    return parser.parse_args(argv)


def time_calls(fn, x, repeats: int) -> float:
    """Median seconds per call after two warm-up calls."""
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def variants(model, window: int, threads: int) -> dict:
    """name -> predict(window (128, T) float32) -> posteriors, the baseline first."""
    import copy
    import tempfile

    import torch

    from utils.live.predictors import OnnxPredictor, TorchPredictor, export_onnx_model

    def eager(x):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(x)[None, None]).double(), 1)[0].numpy()

    # a copy: .to(channels_last) converts in place, and the baseline must keep the default layout
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def channels_last(x):
        with torch.inference_mode():
            t = torch.from_numpy(x)[None, None].contiguous(memory_format=torch.channels_last)
            return torch.softmax(cl_model(t).double(), 1)[0].numpy()

    out = {"eager (baseline)": eager, "inference_mode + channels_last": channels_last}
    out["BN folded + jit trace/freeze"] = TorchPredictor(model, optimize=True, window=window)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("  (onnxruntime not installed: ONNX Runtime not measured)")
        return out
    tmp = tempfile.mkdtemp()
    out["ONNX Runtime (BN folded)"] = OnnxPredictor(export_onnx_model(model, os.path.join(tmp, "m.onnx"), window),
                                                    threads)
    return out


def feature_rtf(seconds: float = 10.0, block: int = 512) -> float:
    """Seconds of feature extraction per second of audio, streamed in microphone-sized blocks."""
    from utils.live.features import SAMPLE_RATE, OnlineV2

    x = (np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)
    online = OnlineV2()
    start = time.perf_counter()
    for i in range(0, len(x), block):
        online.push(x[i:i + block])
    return (time.perf_counter() - start) / seconds


def stream_check(predict, classes: int, seconds: float, window: int, k: int) -> str:
    """A real-time file stream through the whole tagger: achieved rate, skipped, latency."""
    import tempfile

    import soundfile as sf

    from utils.live.features import SAMPLE_RATE
    from utils.live.sources import FileSource
    from utils.live.tagger import LiveTagger, run_stream

    rng = np.random.default_rng(1)
    t = np.arange(int((seconds + 0.5) * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tone.wav")
        sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
        source = FileSource(path, speed=1.0, normalize=True)
    tagger = LiveTagger(predict, window=window, predict_every_k=k)
    stats = run_stream(tagger, source, max_seconds=seconds)
    return stats.summary()


def thread_comparison(model, x: np.ndarray, window: int, repeats: int) -> str:
    """The tagger's torch backend with 1 thread (audio_tagger.py's default) against one per core (torch's own
    default), in this run: on a loaded machine extra threads wait on each other instead of working."""
    import torch

    from utils.cli import cpu_cores

    ms = {}
    for threads in sorted({1, cpu_cores()}):
        torch.set_num_threads(threads)
        predict = variants(model, window, threads)["BN folded + jit trace/freeze"]
        ms[threads] = time_calls(predict, x, repeats) * 1000
    line = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.2f} ms" for t, v in ms.items())
    if len(ms) > 1:
        line += f" -> 1 thread is {ms[cpu_cores()] / ms[1]:.2f}x as fast"
    return line


def view_frame_ms(window: int, repeats: int) -> tuple[float, float]:
    """ms per live-view frame (artists updated + canvas drawn, Agg): the figure rebuilt each frame, as before
    (baseline), against ViewFigure's artists updated in place."""
    from types import SimpleNamespace

    from utils.live.views import ViewFigure, draw_view
    from utils.plots import pyplot

    plt = pyplot()
    rng = np.random.default_rng(0)
    classes = [f"class {i}" for i in range(41)]
    tagger = SimpleNamespace(window=window, n_frames=window, current_window=lambda: rng.random((128, window)),
                             last=SimpleNamespace(probs=rng.dirichlet(np.ones(41))))
    fig = plt.figure(figsize=(7, 6))
    times = {}
    for name in ("rebuilt", "in place"):
        view = ViewFigure(fig, window, classes)
        t0 = time.perf_counter()
        for _ in range(repeats):
            if name == "rebuilt":
                draw_view(fig, tagger, classes)
            else:
                view.show(tagger)
            fig.canvas.draw()
        times[name] = (time.perf_counter() - t0) / repeats * 1000
    plt.close(fig)
    return times["rebuilt"], times["in place"]


def main(args: argparse.Namespace) -> int:
    import torch

    from utils.live.features import FRAMES_PER_SECOND
    from utils.model_files import load_model_file
    from utils.predict import load_trained_model

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads ({os.cpu_count()} cores), window 128x{args.window}, "
          f"median of {args.repeats}")
    rtf = feature_rtf()
    print(f"feature extraction (OnlineV2, 512-sample blocks): real-time factor {rtf:.4f} "
          f"({rtf * 1000 / FRAMES_PER_SECOND * 1000:.0f} us per frame)")
    rebuilt, in_place = view_frame_ms(args.window, 10)
    print(f"live view frame (Agg): figure rebuilt {rebuilt:.0f} ms (baseline), artists updated in place "
          f"{in_place:.0f} ms: {rebuilt / in_place:.1f}x")
    x = np.random.default_rng(0).standard_normal((128, args.window)).astype(np.float32)
    for i, model_file in enumerate(args.models):
        if i == 0 and args.params:
            model, config = load_trained_model(model_file, args.params)
            n_classes = len(config["classes"])
        else:
            n_classes = 41
            torch.manual_seed(0)
            model = load_model_file(model_file).build_model(n_classes)
        model.eval()
        print(f"\n{model_file} ({sum(p.numel() for p in model.parameters()):,} parameters, {n_classes} classes)")
        preds = variants(model, args.window, args.threads)
        ref = None
        best_name, best_ms = None, float("inf")
        base_ms = None
        for name, predict in preds.items():
            ms = time_calls(predict, x, args.repeats) * 1000
            probs = predict(x)
            if ref is None:
                ref, base_ms = probs, ms
            diff = float(np.abs(probs - ref).max())
            same_top = int(np.argmax(probs)) == int(np.argmax(ref))
            # keeping up: each prediction plus the features of the k frames before it within k frames of audio
            k_min = int(np.ceil(ms / 1000 * FRAMES_PER_SECOND / (1 - rtf)))
            print(f"  {name:32s} {ms:7.2f} ms  x{base_ms / ms:4.2f} vs baseline  max |dp| {diff:.1e}"
                  f"{'' if same_top else ' TOP-1 DIFFERS'}  -> keeps up at k >= {k_min} "
                  f"({FRAMES_PER_SECOND / k_min:.1f} predictions/s)")
            if ms < best_ms:
                best_name, best_ms = name, ms
        print(f"  fastest: {best_name}, {best_ms:.2f} ms = {base_ms / best_ms:.2f}x the baseline; "
              f"k={args.predict_every_k} needs {1000 * args.predict_every_k / FRAMES_PER_SECOND:.0f} ms per "
              f"prediction")
        print(f"  torch backend by threads: {thread_comparison(model, x, args.window, args.repeats)}")
        torch.set_num_threads(args.threads)
        if args.stream_seconds > 0:
            summary = stream_check(preds[best_name], n_classes, args.stream_seconds, args.window,
                                   args.predict_every_k)
            print(f"  real-time stream, k={args.predict_every_k}, {best_name}: {summary}")
    return 0


if __name__ == "__main__":
    from utils.cli import run_cli

    run_cli(main, parse_args())
