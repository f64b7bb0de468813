"""Numeric precision of training and evaluation: fp32, or bf16 mixed precision on hardware with bf16 units.

``auto`` (our default) resolves to ``bf16`` where the CPU has bf16 matrix units (AMX-BF16 or AVX-512 BF16 on
x86, the BF16 extension on Arm) or a CUDA device supports bf16, to ``fp16`` on older CUDA devices (with a
gradient scaler), and to ``fp32`` everywhere else. Mixed precision means ``torch.autocast``: weights and
optimiser state stay fp32, matrix products run in the low precision.

Autocast is entered per step (around one forward and its loss), never around a whole training loop: inside one
autocast context the low-precision copies of the weights are cast once and reused, so a loop wrapped whole
trains against stale weights (a TREC teacher stayed at loss ln 6). :func:`autocast` also passes
``cache_enabled=False`` so that even a caller who holds the context across optimiser steps sees fresh weights.

What ran is recorded with every result as the *resolved* precision (``fp32``/``bf16``/``fp16``), never as
``auto``: two machines that resolve ``auto`` differently produce different teachers and different cells.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from core.config import PRECISIONS  # the user-facing choices; ``auto`` is our default

#: what a precision resolves to (fp16 only on CUDA devices without bf16)
RESOLVED = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = "auto"

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (``/proc/cpuinfo``); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_bf16_units() -> bool:
    """True where the CPU computes bf16 matrix products natively (not emulated through fp32)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16", "bf16"})


def resolve(precision: str, device: torch.device | str | None = None) -> str:
    """The precision that actually runs on ``device`` for the setting ``precision`` (auto | fp32 | bf16).

    ``bf16`` asked for explicitly runs in bf16 even without native units (slow but valid: for parity checks);
    on a CUDA device without bf16 support it falls back to fp16.
    """
    if precision not in PRECISIONS and precision not in RESOLVED:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    kind = torch.device(device).type if device is not None else "cpu"
    if precision == "fp32":
        return "fp32"
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "auto":
        return "bf16" if kind == "cpu" and cpu_has_bf16_units() else "fp32"
    return "bf16" if precision in ("bf16", "fp16") else "fp32"


def describe(precision: str, device: torch.device | str | None = None) -> str:
    """One line for the CLI and Setup: what the setting resolves to here, and why."""
    resolved = resolve(precision, device)
    if resolved == "fp32":
        why = "fp32 asked for" if precision == "fp32" else "no bf16 matrix units on this machine"
    else:
        units = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16", "bf16"}) or ["CUDA"]
        why = f"{'auto: ' if precision == 'auto' else ''}{resolved} mixed precision ({', '.join(units)})"
    return f"precision {resolved} ({why})"


@contextlib.contextmanager
def autocast(resolved: str, device: torch.device | str | None = None, *, inference: bool = False) -> Iterator[None]:
    """Mixed precision for one training step (a forward and its loss), or for a whole evaluation pass with
    ``inference=True``; a no-op for ``fp32``.

    Training: ``cache_enabled=False``, the low-precision weight copies are never reused across optimiser steps.
    Inference: the weights do not change inside the context, so each weight is cast to the low precision once
    for the whole pass (autocast's cache) instead of once per batch."""
    if resolved == "fp32":
        yield
        return
    if resolved not in _DTYPES:
        raise ValueError(f"resolved precision must be one of {', '.join(RESOLVED)}; got {resolved!r}")
    kind = torch.device(device).type if device is not None else "cpu"
    with torch.autocast(kind, dtype=_DTYPES[resolved], cache_enabled=inference):
        yield


def grad_scaler(resolved: str, device: torch.device | str | None = None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA (bf16 has fp32's exponent range and needs none)."""
    kind = torch.device(device).type if device is not None else "cpu"
    if resolved == "fp16" and kind == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
