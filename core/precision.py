"""Numeric precision of training and evaluation: fp32, or bf16 mixed precision on hardware with bf16 units.

``auto`` (our default) means *the faster one*. On a CPU it resolves to ``bf16`` only where the CPU has bf16
matrix units (AMX-BF16 or AVX-512 BF16 on x86, the BF16 extension on Arm) **and** the model is wide enough for
bf16 to pay (hidden size at least :data:`BF16_MIN_HIDDEN`: ``python -m benchmarks precision --crossover`` measures
the crossover; on the tiny model, hidden 32, autocast's overhead makes bf16 slower than fp32); a CUDA device
gets ``bf16`` where it supports it and ``fp16`` (with a gradient scaler) where not; everything else is ``fp32``.
Mixed precision means ``torch.autocast``: weights and optimiser state stay fp32, matrix products run in the low
precision.

The CPU's capabilities can be overridden with the environment variable :data:`CPU_BF16_ENV`
(``PRUNE_CPU_BF16=0``: act as a CPU without bf16 units, ``1``: with them; unset: read ``/proc/cpuinfo``). The
test suite sets it, so no test's verdict depends on the machine it runs on, and it lets anyone see what
``auto`` does on the other kind of CPU. The CLI's precision line says when the override is in force.

Autocast is entered per step (around one forward and its loss), never around a whole training loop: inside one
autocast context the low-precision copies of the weights are cast once and reused, so a loop wrapped whole
trains against stale weights (a TREC teacher stayed at loss ln 6). :func:`autocast` also passes
``cache_enabled=False`` so that even a caller who holds the context across optimiser steps sees fresh weights.

What ran is recorded with every result as the *resolved* precision (``fp32``/``bf16``/``fp16``), never as
``auto``: two machines that resolve ``auto`` differently produce different teachers and different cells.

Resolved once: a run resolves its setting where it starts, where its device is chosen (the pruning walk's
:class:`core.pruning.tree.WalkSetup`, :func:`core.merging.loop.merge_events`, the teacher's
:func:`core.teacher.train_teacher`, a command's or a page's entry), and passes the :data:`Resolved` value down;
nothing below calls :func:`resolve` again. :func:`autocast` refuses an unresolved ``auto``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from core.config import PRECISIONS, RESOLVED, ConfigError, Resolved, as_resolved  # ``auto`` is our default

__all__ = ["BF16_MIN_HIDDEN", "CPU_BF16_ENV", "DEFAULT_PRECISION", "PRECISIONS", "RESOLVED", "Resolved", "as_resolved",
           "autocast", "check_run_precision", "describe", "grad_scaler", "hidden_size_of", "resolve"]
DEFAULT_PRECISION = "auto"
#: the environment variable that overrides the CPU's detected bf16 units ("0": none, "1": present)
CPU_BF16_ENV = "PRUNE_CPU_BF16"
#: the smallest hidden size at which ``auto`` picks bf16 on a CPU with bf16 units. Measured with
#: ``python -m benchmarks precision --crossover`` on a 2-core EPYC with AVX-512 BF16 and no AMX (2026-12-07, quiet;
#: the README's precision table): bf16 / fp32 of a training step and a forward is 1.08 / 1.14 at hidden 32, 0.95 /
#: 1.12 at 64 (a forward still slower), 0.79 / 0.84 at 128, 0.72 / 0.66 at 256, 0.63-0.70 / 0.54-0.57 at 384
#: (e5-small, MiniLM-L6); so bf16 pays from 128 on.
BF16_MIN_HIDDEN = 128
#: the CPU flags of bf16 matrix units
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})

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


def cpu_override() -> bool | None:
    """The override of :data:`CPU_BF16_ENV`: True/False, or None when unset. A value other than 0/1 is refused."""
    value = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if not value:
        return None
    if value in ("1", "yes", "true"):
        return True
    if value in ("0", "no", "false"):
        return False
    raise ValueError(f"{CPU_BF16_ENV} must be 0 (no bf16 units) or 1 (bf16 units), or unset; got {value!r}")


def cpu_has_bf16_units() -> bool:
    """True where the CPU computes bf16 matrix products natively (not emulated through fp32), or where
    :data:`CPU_BF16_ENV` says so."""
    override = cpu_override()
    if override is not None:
        return override
    return bool(cpu_flags() & BF16_FLAGS)


def hidden_size_of(model: object) -> int | None:
    """The hidden size of a Hugging Face model (its ``config.hidden_size``), or None when it has none."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    return int(size) if isinstance(size, int) else None


def _auto(kind: str, hidden_size: int | None) -> tuple[Resolved, str]:
    """What ``auto`` picks on a device of ``kind`` for a model of ``hidden_size``, and why (one clause)."""
    if kind == "cuda":
        return ("bf16", "CUDA with bf16") if torch.cuda.is_bf16_supported() else ("fp16", "CUDA without bf16")
    if kind != "cpu":
        return "fp32", f"no mixed precision on {kind}"
    if hidden_size is not None and hidden_size < BF16_MIN_HIDDEN:  # decided without asking the CPU
        return "fp32", (f"hidden size {hidden_size} < {BF16_MIN_HIDDEN}: fp32 is faster than bf16 at this width, "
                        "with or without bf16 units")
    forced = " (PRUNE_CPU_BF16 override)" if cpu_override() is not None else ""
    if not cpu_has_bf16_units():
        return "fp32", f"no bf16 matrix units on this machine{forced}"
    units = ", ".join(sorted(cpu_flags() & BF16_FLAGS)) or "bf16 units"
    width = f"hidden size {hidden_size} >= {BF16_MIN_HIDDEN}" if hidden_size is not None else "model of unknown width"
    return "bf16", f"{units}{forced}, {width}: bf16 is faster"


def resolve(precision: str, device: torch.device | str | None = None, hidden_size: int | None = None) -> Resolved:
    """The precision that actually runs on ``device`` for the setting ``precision`` (auto | fp32 | bf16), for a
    model of ``hidden_size`` (None: unknown, taken as wide; only ``auto`` looks at it).

    ``bf16`` asked for explicitly runs in bf16 even without native units (slow but valid: for parity checks);
    on a CUDA device without bf16 support it falls back to fp16.
    """
    if precision not in PRECISIONS and precision not in RESOLVED:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    kind = torch.device(device).type if device is not None else "cpu"
    if precision == "fp32":
        return "fp32"
    if precision == "auto":
        return _auto(kind, hidden_size)[0]
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if precision in ("bf16", "fp16") else "fp32"


def check_run_precision(owner: str, precision: str, model: str, hidden_size: int | None) -> None:
    """Refuse an explicit ``bf16`` run of a model narrower than :data:`BF16_MIN_HIDDEN`, with the reason: at that
    width bf16 is slower than fp32 and its training is not stable (the tiny model's keyword teacher learned at
    one thread and collapsed to the majority class at two, on a CPU without bf16 units: issue 28). Evaluations
    and parity checks may still call :func:`autocast` in bf16 on any model."""
    if precision == "bf16" and hidden_size is not None and hidden_size < BF16_MIN_HIDDEN:
        raise ConfigError(f"{owner}.precision 'bf16' is refused for {model} (hidden size {hidden_size} < "
                          f"{BF16_MIN_HIDDEN}): at this width bf16 trains slower than fp32 and not reliably (its "
                          "teacher can collapse to the majority class, depending on the thread count); use 'auto' "
                          "or 'fp32'")


def describe(precision: str, device: torch.device | str | None = None, hidden_size: int | None = None) -> str:
    """One line for the CLI and Setup: what the setting resolves to here, and why."""
    resolved = resolve(precision, device, hidden_size)
    if precision == "auto":
        why = "auto: " + _auto(torch.device(device).type if device is not None else "cpu", hidden_size)[1]
    elif resolved == "fp32":
        why = "fp32 asked for"
    else:
        units = ", ".join(sorted(cpu_flags() & BF16_FLAGS)) or "emulated: no bf16 units here"
        why = f"{resolved} mixed precision asked for ({units})"
    return f"precision {resolved} ({why})"


@contextlib.contextmanager
def autocast(resolved: Resolved, device: torch.device | str | None = None, *,
             inference: bool = False) -> Iterator[None]:
    """Mixed precision for one training step (a forward and its loss), or for a whole evaluation pass with
    ``inference=True``; a no-op for ``fp32``.

    Training: ``cache_enabled=False``, the low-precision weight copies are never reused across optimiser steps.
    Inference: the weights do not change inside the context, so each weight is cast to the low precision once
    for the whole pass (autocast's cache) instead of once per batch."""
    if as_resolved(resolved, "autocast's precision") == "fp32":  # refuses an unresolved "auto"
        yield
        return
    kind = torch.device(device).type if device is not None else "cpu"
    with torch.autocast(kind, dtype=_DTYPES[resolved], cache_enabled=inference):
        yield


def grad_scaler(resolved: Resolved, device: torch.device | str | None = None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA (bf16 has fp32's exponent range and needs none)."""
    kind = torch.device(device).type if device is not None else "cpu"
    if resolved == "fp16" and kind == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
