"""``python -m benchmarks e5convert [variant]``: a fresh conversion of the embedded e5-small against the cached
check that skips it.

Libraries are imported first so only the conversion is timed; CPU seconds are printed beside wall seconds
because the wall clock stretches on a shared machine. It needs the real embedded model (no tiny stand-in):
its smoke test times :func:`measure` on a stand-in conversion.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.models.e5convert import VARIANT_FILES, convert, is_converted


def measure(out: Path, convert: Callable[[Path], object], is_converted: Callable[[Path], bool],
            checks: int = 100) -> dict[str, Any]:
    """Time ``convert(out)`` (wall and CPU seconds) and the mean of ``checks`` cached checks
    ``is_converted(out)``; with the ratio of the two and the folder's size in MiB."""
    wall, cpu = time.perf_counter(), time.process_time()
    convert(out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    start = time.perf_counter()
    for _ in range(checks):
        if not is_converted(out):
            raise RuntimeError(f"{out} does not pass its own check after the conversion")
    cached = (time.perf_counter() - start) / checks
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    return {"convert_wall": wall, "convert_cpu": cpu, "cached_check": cached, "ratio": wall / cached,
            "folder_mib": size}


def line(variant: str, r: dict[str, Any]) -> str:
    return (f"variant={variant} convert_wall={r['convert_wall']:.2f}s convert_cpu={r['convert_cpu']:.2f}s "
            f"cached_check={r['cached_check'] * 1e3:.3f}ms ratio={r['ratio']:.0f}x folder={r['folder_mib']:.0f}MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks e5convert")
    parser.add_argument("variant", nargs="?", default="enpt", choices=sorted(VARIANT_FILES))
    args = parser.parse_args(argv or [])
    # transformers is imported before the timer starts (core.models.e5convert brings safetensors and tokenizers),
    # so only the conversion is timed; not at the top: the smoke test imports this module for measure() alone
    import transformers  # noqa: F401, PLC0415 deferred: cost (transformers)

    with tempfile.TemporaryDirectory(prefix="e5convert-") as tmp:
        out = Path(tmp) / f"e5-small-{args.variant}"
        result = measure(out, lambda o: convert(o, args.variant), lambda o: is_converted(o, args.variant))
    print(line(args.variant, result))
    return 0
