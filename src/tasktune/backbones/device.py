"""Device and dtype, chosen once at the edge and logged with the reason.

Weights stay in float32 (trainable soft prompts and adapters must be fp32, and a 135M model fits
easily); on CUDA the forward pass runs under bf16 autocast, which is where the speed comes from.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from tasktune.errors import BackboneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    compute_dtype: torch.dtype  # the autocast dtype of forward passes
    reason: str

    @property
    def dtype_name(self) -> str:
        return str(self.compute_dtype).removeprefix("torch.")

    def autocast(self) -> torch.autocast:
        """Context manager for forward passes; a no-op (enabled=False) in fp32."""
        enabled = self.compute_dtype != torch.float32
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype, enabled=enabled)


def resolve_device(requested: str | None = None) -> DeviceChoice:
    """``requested`` is ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            requested = "cuda"
        else:
            choice = DeviceChoice(torch.device("cpu"), torch.float32, "no CUDA device visible: CPU, fp32")
            log.info("device: %s", choice.reason)
            return choice
    if requested == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        requested = f"cuda:{os.environ['LOCAL_RANK']}"  # accelerate launch / torchrun: one GPU per process
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise BackboneError(f"device {requested!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackboneError(f"device {requested!r} requested but CUDA is not available on this machine")
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            choice = DeviceChoice(
                device, torch.bfloat16, f"CUDA ({name}) supports bf16: bf16 autocast, fp32 weights"
            )
        else:
            choice = DeviceChoice(device, torch.float32, f"CUDA ({name}) without bf16 support: fp32")
    elif device.type == "cpu":
        choice = DeviceChoice(
            device, torch.float32, "CPU requested: fp32 (bf16 on CPU is slower and less exact)"
        )
    else:
        choice = DeviceChoice(device, torch.float32, f"{device.type} requested: fp32")
    log.info("device: %s", choice.reason)
    return choice
