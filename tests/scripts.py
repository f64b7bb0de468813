"""Load a file of ``scripts/`` as a module (the scripts are not a package), for tests of their pure functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as the module ``_script_<name>`` (registered, so its dataclasses resolve); an archived
    one is ``archive/<name>`` (``scripts/archive/<name>.py``)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name.replace('/', '_')}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
