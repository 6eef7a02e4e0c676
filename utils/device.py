"""Where a run computes: the torch device, DDP's process group under torchrun, and mixed precision."""

import os

import torch
import torch.distributed as dist

from utils.errors import StepFailed

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str | None = None) -> torch.device:
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise StepFailed("--device cuda asked for, but CUDA is not available")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_amp(amp: str | None, device: torch.device) -> str | None:
    """--amp's dtype name: 'auto' is bf16 where the device has it (every CPU torch runs on, Ampere and later GPUs),
    else fp16, which needs a gradient scaler."""
    if amp != "auto":
        return amp
    # emulated bf16 (pre-Ampere GPUs) counts as supported by default, but is slow there
    return "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def setup_distributed(device_name: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them, one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, pick_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device
