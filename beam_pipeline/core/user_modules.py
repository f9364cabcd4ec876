"""User modules (``transforms/*.py``, ``models/*.py``): loaded by path, their source hashed.

A user module is a plain Python file named in the config. It is loaded by path, not imported by
name, so it needs no package and no ``sys.path`` entry; its source hash is part of the cache key of
every stage that loads it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from beam_pipeline.core.errors import ConfigError


def module_path(path: str | None, key: str) -> Path:
    """The module file named by config key ``key``; ConfigError when unset or missing."""
    if not path:
        raise ConfigError(f"{key}: a user module is required; received nothing")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{key}: user module file not found: {file}")
    return file


def module_hash(path: str | None, key: str) -> str:
    """sha256 of the module's source: the cache-key material for stages that load it."""
    return hashlib.sha256(module_path(path, key).read_bytes()).hexdigest()


def load_module(path: str | None, key: str) -> ModuleType:
    """Execute the module file and return it; errors while importing it are ConfigErrors."""
    file = module_path(path, key)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"user_module_{file.stem}_{digest}", file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file names
        raise ConfigError(f"{key}: cannot load {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{key}: importing {file} raised {type(exc).__name__}: {exc}") from exc
    return module


def require(module: ModuleType, name: str, key: str, *, callable_: bool = True) -> Any:
    """``module.name``; ConfigError naming the file when it is missing (or not callable)."""
    value = getattr(module, name, None)
    if value is None or (callable_ and not callable(value)):
        what = "a function" if callable_ else "a module constant"
        raise ConfigError(
            f"{key}: {module.__file__} must define {name} ({what}); "
            f"received {'nothing' if value is None else type(value).__name__}"
        )
    return value
