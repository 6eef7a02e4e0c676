"""Export a trained model to ONNX (BatchNorm folded into the convs, eval mode, any number of frames).

    python export_onnx.py --model models/vgg_gap_spec2_no_pp.py --params params_1_it0.pt --out model.onnx

Input 'spectrogram' (batch, 1, 128, frames >= 256) float32, output 'logits' (batch, classes); the class list is
written next to it as <out>.classes.txt, one per line, in output order. The export is checked against torch.
"""

import argparse
from pathlib import Path

from utils.cli import run_cli
from utils.errors import StepFailed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model file, e.g. models/vgg_gap_spec2_no_pp.py")
    parser.add_argument("--params", required=True, help="trained parameters (params_<fold>_<tag>.pt)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--window", type=int, default=256, help="frames of the example input (default 256)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from utils.atomic import save_text
    from utils.live.predictors import OnnxPredictor, check_window, export_onnx_model
    from utils.predict import load_trained_model

    check_window(args.window)  # before loading: a bad flag is reported without waiting for the model
    model, config = load_trained_model(args.model, args.params)
    model.eval()
    out = export_onnx_model(model, args.out, args.window)
    save_text(Path(f"{out}.classes.txt"), "".join(f"{c}\n" for c in config["classes"]))
    x = np.random.default_rng(0).standard_normal((128, args.window)).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x)[None, None]).double(), 1)[0].numpy()
    diff = float(np.abs(OnnxPredictor(out)(x) - ref).max())
    if diff > 1e-4:
        raise StepFailed(f"the ONNX model's posteriors differ from torch's by {diff:.1e}")
    print(f"wrote {out} ({len(config['classes'])} classes; posteriors within {diff:.1e} of torch)")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
