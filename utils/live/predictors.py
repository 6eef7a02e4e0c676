"""Live predictors: torch eager, torch optimised (BatchNorm folded, traced, frozen) and ONNX Runtime."""

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.special

from utils.errors import InputError
from utils.live.features import FRAMES_PER_SECOND
from utils.spectrogram import N_BINS


def fold_batchnorm(model):
    """An inference copy of a VGG-GAP: each Conv+BatchNorm pair folded into one conv, dropout dropped.
    Same outputs up to float rounding, fewer passes over memory."""
    import copy

    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(seq: nn.Sequential) -> nn.Sequential:
        layers, mods = [], list(seq)
        i = 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                layers.append(fuse_conv_bn_eval(m, mods[i + 1]))
                i += 2
                continue
            if not isinstance(m, nn.Dropout):
                layers.append(m)
            i += 1
        return nn.Sequential(*layers)

    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        model.features = fold(model.features)
        model.classifier = fold(model.classifier)
    return model


class TorchPredictor:
    """Softmax posteriors of one (128, T) window with a torch model.

    optimize=False is the plain eager forward (the baseline); True folds BatchNorm into the convs, runs under
    inference_mode, and traces+freezes the graph with the oneDNN (mkldnn) fusions for this window size.
    """

    def __init__(self, model, optimize: bool = True, window: int = 256):
        import torch

        self.torch = torch
        model = model.eval()
        self.optimized = optimize and hasattr(model, "features")
        if self.optimized:
            model = fold_batchnorm(model)
            # trace/freeze are deprecated in favour of torch.compile, which takes minutes on 2 cores; they still
            # give the oneDNN fusions, so their warnings are kept off the user's terminal
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                example = torch.zeros(1, 1, N_BINS, window)
                model = torch.jit.freeze(torch.jit.trace(model, example))
                for _ in range(2):  # the first calls of a frozen graph optimise it further
                    model(example)
        self.model = model

    def __call__(self, window: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None]
        with torch.inference_mode():
            logits = self.model(x)[0].double()
        return torch.softmax(logits, 0).numpy()


class OnnxPredictor:
    """Softmax posteriors with ONNX Runtime on a model exported by export_onnx.py (or export_onnx_model)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(window, dtype=np.float32)[None, None]
        logits = self.session.run(None, {self.input_name: x})[0].astype(np.float64)
        return scipy.special.softmax(logits[0])


def check_window(window: int) -> None:
    """A window the network can take; checked before any tracing or export, whose torch errors say nothing
    about the flag."""
    from utils.vgg_gap import MIN_FRAMES

    if window < MIN_FRAMES:
        raise InputError(f"--window must be at least {MIN_FRAMES} frames (the network's smallest input, "
                         f"{MIN_FRAMES / FRAMES_PER_SECOND:.2f} s), got {window}")


def export_onnx_model(model, out: str | Path, window: int = 256) -> Path:
    """Write the model (BatchNorm folded, eval mode) as ONNX with a dynamic time axis; returns the path."""
    import torch

    from utils.atomic import atomic_write

    check_window(window)
    out = Path(out)
    model = fold_batchnorm(model)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():  # the legacy (TorchScript) exporter's deprecation notes
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 1, N_BINS, window),), tmp, input_names=["spectrogram"],
                              output_names=["logits"], opset_version=17, dynamo=False,
                              dynamic_axes={"spectrogram": {0: "batch", 3: "frames"}, "logits": {0: "batch"}})
    atomic_write(out, write)  # a half-written model file is never left under the real name, nor a temp file
    return out


def load_predictor(model_file: str | Path, params_file: str | Path, backend: str = "torch", window: int = 256,
                   threads: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """The predictor for a model file and its params, and the class list the params were trained with."""
    import tempfile

    import torch

    from utils.model_files import load_model_file, model_settings
    from utils.predict import load_trained_model

    check_window(window)
    settings = model_settings(load_model_file(model_file))
    if settings["spec_version"] != 2:
        raise InputError(f"{model_file} is trained on spectrogram version {settings['spec_version']}; the live "
                         f"tagger computes version 2 (use e.g. models/vgg_gap_spec2_no_pp.py)")
    if settings["preprocessing"]:
        print(f"note: {model_file} was trained on SoX-trimmed audio; a stream cannot be trimmed, so models trained "
              f"with --no_preprocessing fit better", file=sys.stderr)
    if threads:
        torch.set_num_threads(threads)
    model, config = load_trained_model(model_file, params_file)
    classes = list(config["classes"])
    if backend == "torch":
        return TorchPredictor(model, optimize=True, window=window), classes
    if backend == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            # the session holds the model in memory once created, so the file can go
            return OnnxPredictor(export_onnx_model(model, Path(tmp) / "model.onnx", window), threads), classes
    raise InputError(f"unknown backend {backend!r}; expected torch or onnx")
