"""What the live tagger makes of microphone-like audio: the demo live-tagger model on scored test clips, streamed
as they are and through a simulated room and microphone (utils/demo/room.py, a chain drawn per clip), in one run.

    python -m benchmarks.room [--data_root data] [--exp_root experiments] [--n_clips 40] [--seed 7]

Needs `make demo` (or run_demo.sh) first: it uses experiments/vgg_gap_demo_no_pp/params_1_it0.pt. Reports how often
the clip's label is among the top 3 of the tagger's last prediction, and how often over all its predictions."""

import argparse

import numpy as np
import pandas as pd


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default="data")
    parser.add_argument("--exp_root", default="experiments")
    parser.add_argument("--n_clips", type=int, default=40, help="scored test clips to stream (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="first room's seed; clip i gets seed + i")
    return parser.parse_args(argv)


def top3_shares(source, predict, classes: list[str], label: str) -> tuple[bool, float]:
    """(label in the last prediction's top 3, share of all predictions with the label in their top 3)."""
    from utils.live.tagger import LiveTagger, run_stream

    hits = []
    tagger = LiveTagger(predict, window=256, predict_every_k=10)
    run_stream(tagger, source, lambda t, pred: pred is not None and hits.append(
        label in [classes[i] for i in np.argsort(-pred.probs)[:3]]))
    return bool(hits and hits[-1]), float(np.mean(hits)) if hits else 0.0


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    from utils.audio import AudioError
    from utils.live.predictors import load_predictor
    from utils.live.sources import FileSource

    data, params = Path(args.data_root), Path(args.exp_root) / "vgg_gap_demo_no_pp" / "params_1_it0.pt"
    predict, classes = load_predictor("models/vgg_gap_demo_no_pp.py", params, "torch", 256, 1)
    test = pd.read_csv(data / "test_post_competition.csv")
    test = test[test["usage"] != "Ignored"]
    rows = {"as recorded": [], "through a room": []}
    n = 0
    for fname, label in zip(test["fname"], test["label"], strict=True):
        if n == args.n_clips:
            break
        try:
            sources = {"as recorded": FileSource(data / "audio_test" / fname, speed=0),
                       "through a room": FileSource(data / "audio_test" / fname, speed=0, room_seed=args.seed + n)}
        except AudioError:
            continue  # the test set's broken clips
        for name, source in sources.items():
            rows[name].append(top3_shares(source, predict, classes, label))
        n += 1
    print(f"{n} scored test clips, demo live-tagger model, label in the top 3:")
    for name, r in rows.items():
        last, every = np.mean([a for a, _ in r]), np.mean([b for _, b in r])
        print(f"  {name:15s} last prediction {last:.2f}, all predictions {every:.2f}")


if __name__ == "__main__":
    main(parse_args())
