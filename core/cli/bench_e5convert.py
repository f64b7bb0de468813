"""``python -m core bench e5convert [variant]``: a fresh conversion of the embedded e5-small against the cached
check that skips it.

Libraries are imported first so only the conversion is timed; CPU seconds are printed beside wall seconds
because the wall clock stretches on a shared machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from core.models.e5convert import VARIANT_FILES, convert, is_converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core bench e5convert")
    parser.add_argument("variant", nargs="?", default="enpt", choices=sorted(VARIANT_FILES))
    args = parser.parse_args(argv or [])
    import safetensors.numpy  # noqa: F401
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="e5convert-") as tmp:
        out = Path(tmp) / f"e5-small-{args.variant}"
        wall, cpu = time.perf_counter(), time.process_time()
        convert(out, args.variant)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        start = time.perf_counter()
        for _ in range(100):
            assert is_converted(out, args.variant)
        cached = (time.perf_counter() - start) / 100
        size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"variant={args.variant} convert_wall={wall:.2f}s convert_cpu={cpu:.2f}s "
          f"cached_check={cached * 1e3:.3f}ms ratio={wall / cached:.0f}x folder={size:.0f}MiB")
    return 0
