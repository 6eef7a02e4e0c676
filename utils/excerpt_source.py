"""Where training batches are cut: on the host (numpy, then copied to the device) or on the device (an index
gather from a store of every training frame held there).

Both take the same per-batch draws from the host, made by `draw_starts` from the batch's generator: the rows
(clips) and the excerpts' start frames. So a seed gives the same batches on either path, and the only per-batch
traffic to the device on the device path is a few hundred integers. A clip is kept at its own length (clipped at
max_len) and tiled where an excerpt runs past its end, as utils.spec_data does on the host."""

import numpy as np
import torch

from utils.spec_data import excerpt_at


def draw_starts(rng: np.random.Generator, n: int, max_len: int, excerpt_len: int) -> np.ndarray:
    """Start frames of n excerpts in clips tiled/clipped to max_len frames, in one draw."""
    return rng.integers(0, max_len - excerpt_len + 1, size=n)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on the device without stalling the host: a copy from pageable memory would wait for the
    GPU's queue to drain, so it goes through pinned memory, asynchronously."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def store_bytes(specs: list[np.ndarray], dtype: torch.dtype) -> int:
    return sum(s.shape[0] * s.shape[1] for s in specs) * torch.empty((), dtype=dtype).element_size()


class HostExcerpts:
    """Excerpts cut from the host's spectrograms (views into the memory-mapped store), then copied over."""

    def __init__(self, specs: list[np.ndarray], device: torch.device):
        self.specs, self.device = specs, device

    def cut(self, rows: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
        """(N, 1, bins, length) float32 on the device: clip rows[i] from starts[i], tiled where it runs out."""
        x = np.stack([excerpt_at(self.specs[r], s, length) for r, s in zip(rows, starts, strict=True)])
        return to_device(x[:, None], self.device)


class DeviceExcerpts:
    """Every clip's frames in one (total_frames, bins) tensor on the device; excerpts are one gather.

    Held in float32, or in the mixed-precision dtype (half the memory; the first convolution casts to it anyway)."""

    def __init__(self, specs: list[np.ndarray], device: torch.device, dtype: torch.dtype = torch.float32):
        lengths = np.array([s.shape[1] for s in specs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.frames = torch.empty((int(lengths.sum()), specs[0].shape[0]), dtype=dtype, device=device)
        for spec, offset, n in zip(specs, offsets, lengths, strict=True):
            # the store's clips are frame-major, so spec.T is one block: copied out of the read-only memory map
            self.frames[offset:offset + n] = torch.from_numpy(np.array(spec.T)).to(device, dtype)
        self.lengths = torch.from_numpy(lengths).to(device)
        self.offsets = torch.from_numpy(offsets).to(device)
        self.device = device

    def cut(self, rows: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
        rows_t, starts_t = to_device(rows, self.device), to_device(starts, self.device)
        steps = torch.arange(length, device=self.device)
        frame = (starts_t[:, None] + steps) % self.lengths[rows_t, None] + self.offsets[rows_t, None]
        return self.frames[frame].transpose(1, 2).unsqueeze(1).float().contiguous()  # NCHW, as the host path


def fits_on_device(nbytes: int, device: torch.device) -> tuple[bool, str]:
    """Whether a store of nbytes leaves the device room to train (it may take half of what is free), and why."""
    if device.type != "cuda":
        return False, f"{device} is not a GPU"
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes > free // 2:
        return False, f"{nbytes / 2**30:.1f} GiB of spectrograms is more than half of the {free / 2**30:.1f} GiB free"
    return True, f"{nbytes / 2**30:.2f} GiB of spectrograms on {device}"


def excerpt_source(specs: list[np.ndarray], device: torch.device, data_on: str, dtype: torch.dtype
                   ) -> tuple[HostExcerpts | DeviceExcerpts, str]:
    """The source for --data_on host/device/auto (auto: the device when it is a GPU with room), and what was chosen
    and why, for the log."""
    if data_on == "host":
        return HostExcerpts(specs, device), "excerpts cut on the host (--data_on host)"
    if data_on == "device":
        return DeviceExcerpts(specs, device, dtype), f"excerpts gathered on {device} (--data_on device)"
    fits, why = fits_on_device(store_bytes(specs, dtype), device)
    if fits:
        return DeviceExcerpts(specs, device, dtype), f"excerpts gathered on the device: {why}"
    return HostExcerpts(specs, device), f"excerpts cut on the host: {why}"
