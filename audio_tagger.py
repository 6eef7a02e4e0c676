"""Tag live audio: the microphone (or a file played as a stream), a class posterior every k spectrogram frames.

    python audio_tagger.py --model models/vgg_gap_spec2_no_pp.py --params params_1_it0.pt --predict_every_k 10
    python audio_tagger.py --model models/vgg_gap_spec2_no_pp.py --params params_1_it0.pt --input clip.wav \\
        --headless --save_view view.png

Features are those of prepare_spectrograms.py --spec_version 2 --no_preprocessing (frame 1024, hop 128, 32 kHz),
computed frame by frame. When the model is slower than the audio, the tagger predicts on the newest window and
counts the skipped predictions instead of queueing them, so it never falls behind. Ctrl-C ends with a summary.
A file given with --input is rescaled to full scale like offline v2; a microphone keeps its recorded level.
"""

import argparse
import sys

from utils.cli import add_threads_arg, check_threads, run_cli
from utils.errors import InputError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="model file, e.g. models/vgg_gap_spec2_no_pp.py")
    model.add_argument("--params", help="trained parameters (params_<fold>_<tag>.pt); the class list comes from it")
    model.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                       help="torch (BatchNorm folded, traced and frozen) or onnx (ONNX Runtime; the model is "
                            "exported to a temporary file at start)")
    add_threads_arg(model, 1, "the audio callback and the view share the cores, and one small forward pass "
                              "gains nothing from more; on a loaded 2-core machine 1 thread ran 5x faster than 2 "
                              "(python -m benchmarks.tagger)")
    audio = parser.add_argument_group("audio")
    audio.add_argument("--input", default=None, help="play this audio file as the stream instead of the microphone")
    audio.add_argument("--speed", type=float, default=1.0,
                       help="with --input: 1 = real time, 2 = twice as fast, 0 = as fast as possible")
    audio.add_argument("--raw_level", action="store_true",
                       help="with --input: keep the file's level instead of rescaling it to full scale as "
                            "offline v2 does (what a microphone would hear)")
    audio.add_argument("--room", type=int, default=None, metavar="SEED",
                       help="with --input: play the file through a simulated room and microphone drawn from SEED "
                            "(reverb, microphone colouring, level, compression or clipping, noise), a preview of "
                            "what a real microphone would hear")
    audio.add_argument("--input_device", default=None,
                       help="sound input device, index or name (see --list_devices); default: the system's")
    audio.add_argument("--list_devices", action="store_true", help="list the sound devices and exit")
    audio.add_argument("--max_seconds", type=float, default=None, help="stop after this much audio")
    pred = parser.add_argument_group("prediction")
    pred.add_argument("--window", type=int, default=256, help="frames the model sees (default 256 = 1.02 s)")
    pred.add_argument("--predict_every_k", type=int, default=10, help="a prediction every k frames (default 10)")
    view = parser.add_argument_group("view")
    view.add_argument("--headless", action="store_true", help="a terminal line instead of the matplotlib window")
    view.add_argument("--top", type=int, default=5, help="classes shown as bars (the terminal line shows 3)")
    view.add_argument("--save_view", default=None, metavar="FILE.png", help="write the last view on exit")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse flag values that would otherwise surface as torch or numpy errors deep inside the run."""
    from utils.live.predictors import check_window

    check_window(args.window)
    if args.predict_every_k < 1:
        raise InputError(f"--predict_every_k must be at least 1, got {args.predict_every_k}")
    if args.speed < 0:
        raise InputError(f"--speed must be >= 0, got {args.speed}")
    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    check_threads(args.threads)
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise InputError(f"--max_seconds must be > 0, got {args.max_seconds}")
    if args.room is not None and args.input is None:
        raise InputError("--room needs --input: a microphone already records a real room")


def main(args: argparse.Namespace) -> int:
    from utils.audio import AudioError
    from utils.live.features import FRAMES_PER_SECOND
    from utils.live.predictors import load_predictor
    from utils.live.sources import FileSource, MicSource, list_devices, parse_device
    from utils.live.tagger import LiveTagger, run_stream
    from utils.live.views import PlotView, TerminalView, draw_view, save_view, top_classes

    if args.list_devices:
        print(list_devices())
        return 0
    if not args.model or not args.params:
        raise InputError("--model and --params are required (or --list_devices)")
    check_args(args)
    # the source first: a missing microphone is reported before the model is loaded
    if args.input is not None:
        try:
            source = FileSource(args.input, speed=args.speed, normalize=not args.raw_level, room_seed=args.room)
        except AudioError as e:  # its message names the file; as ValueError run_cli prints it in one line
            raise InputError(f"--input {e}") from None
        for w in source.warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        source = MicSource(parse_device(args.input_device))
    predict, classes = load_predictor(args.model, args.params, args.backend, args.window, args.threads)
    tagger = LiveTagger(predict, window=args.window, predict_every_k=args.predict_every_k)

    from utils.plots import has_display

    live_plot = not args.headless and has_display()
    if not args.headless and not live_plot:
        print("no display: showing the terminal line instead (use --headless to say so)", file=sys.stderr)
    view = PlotView(classes, top=args.top) if live_plot else TerminalView(classes, top=3)
    what = args.input or f"input device {source.info.get('name')!r} at {source.rate} Hz"
    if args.input is not None and source.chain is not None:
        what += f" through a simulated room and microphone ({source.chain.describe()})"
    print(f"tagging {what} with {len(classes)} classes: window {args.window} frames, a prediction every "
          f"{args.predict_every_k} frames ({FRAMES_PER_SECOND / args.predict_every_k:.1f}/s); Ctrl-C ends",
          file=sys.stderr)
    try:
        stats = run_stream(tagger, source, view, max_seconds=args.max_seconds)
    finally:
        if args.save_view:
            if live_plot:
                from utils.plots import save_figure

                draw_view(view.fig, tagger, classes, args.top)
                save_figure(view.fig, args.save_view)
            else:
                save_view(tagger, classes, args.save_view, top=args.top)
        view.close()
    print(stats.summary(), file=sys.stderr)
    if getattr(source, "overflows", 0):
        print(f"warning: the input device lost audio {source.overflows} time(s) (input overflow): the machine was "
              f"too busy to keep up; try a larger --predict_every_k or --backend onnx", file=sys.stderr)
    if args.save_view:
        print(f"last view: {args.save_view}", file=sys.stderr)
    if tagger.last is not None:
        tops = ", ".join(f"{c} {p:.3f}" for c, p in top_classes(tagger.last.probs, classes, args.top))
        print(f"last prediction: {tops}")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
