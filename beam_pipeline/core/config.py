"""Typed pipeline configuration, loaded strictly from one YAML file.

Every section is a frozen dataclass. Unknown keys, wrong types and missing required keys raise a
`ConfigError` naming the file and the key path. Fields marked with ``path()`` are resolved against
the folder that holds the config file, defaults (``pipeline.root: runs``) included. Secrets never
live here: a backend names the environment variable that holds its password.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from beam_pipeline.core.errors import ConfigError


def path(default: str | None = None) -> Any:
    """A dataclass field holding a path, resolved against the config file's folder."""
    return field(default=default, metadata={"path": True})


@dataclass(frozen=True)
class PipelineSection:
    name: str
    root: str = path("runs")

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(
                f"pipeline.name must be letters, digits, - or _; received {self.name!r}"
            )


@dataclass(frozen=True)
class MetadataSection:
    backend: Literal["sqlite", "memory", "mysql", "postgresql"] = "sqlite"
    path: str | None = path(None)  # sqlite file; default {pipeline.root}/metadata.sqlite
    host: str = "127.0.0.1"
    port: int | None = None
    database: str = "mlmd"
    user: str = "mlmd"
    password_env: str = "MLMD_PASSWORD"  # the password is read from this environment variable

    def password(self) -> str:
        return os.environ.get(self.password_env, "")


@dataclass(frozen=True)
class BeamSection:
    runner: str = "DirectRunner"
    options: list[str] = field(default_factory=list)
    direct_running_mode: Literal["in_memory", "multi_processing"] = "in_memory"
    direct_num_workers: int = 1


@dataclass(frozen=True)
class Config:
    """A whole pipeline config: three fixed sections plus one section per stage."""

    pipeline: PipelineSection
    metadata: MetadataSection = field(default_factory=MetadataSection)
    beam: BeamSection = field(default_factory=BeamSection)
    stages: dict[str, Any] = field(default_factory=dict)  # stage section name -> its dataclass
    source_file: str = ""  # the YAML this came from (not a YAML key)

    @property
    def root(self) -> Path:
        """``pipeline.root``: a `Path`, or an `ObjectPath` for an object-store URI."""
        from beam_pipeline.io.filesystem import as_path

        return as_path(self.pipeline.root)  # type: ignore[return-value]

    def section(self, name: str) -> Any:
        """The typed section of a stage (its defaults when the YAML leaves it out)."""
        return self.stages[name]


# ---------------------------------------------------------------------------------------------
# Loading

# Every section beyond pipeline, metadata and beam, for a `load` given none. The sections are
# defined above core (the stages', serving's, the monitor's), so the package root wires this to
# `beam_pipeline.sections.all_sections`: core names none of them.
default_sections: Callable[[], dict[str, type]] | None = None


def load(
    config_file: str | os.PathLike[str],
    overrides: list[str] | None = None,
    sections: dict[str, type] | None = None,
) -> Config:
    """Read, override (``section.key=value``), type-check and resolve one config file.

    ``sections`` maps each section name to its dataclass; by default, `default_sections()`
    (`beam_pipeline.sections.all_sections`).
    """
    if sections is None:
        if default_sections is None:
            raise ConfigError(f"{config_file}: no config sections are known (none registered)")
        sections = default_sections()
    file = Path(config_file)
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of sections; received {type(data).__name__}")
    for item in overrides or []:
        _apply_override(data, item, file)
    base = file.parent.resolve()
    fixed = {"pipeline", "metadata", "beam"}
    unknown = sorted(set(data) - fixed - set(sections))
    try:
        if unknown:
            raise ConfigError(
                f"unknown section {unknown[0]!r}; expected one of {sorted(fixed | set(sections))}"
            )
        config = _build(Config, {k: v for k, v in data.items() if k in fixed}, "", base)
        stages = {
            name: _build(cls, data.get(name) or {}, name, base) for name, cls in sections.items()
        }
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    return dataclasses.replace(config, stages=stages, source_file=str(file))


def _apply_override(data: dict[str, Any], item: str, file: Path) -> None:
    key, sep, raw = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value; received {item!r}")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{file}: --set {key}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw else None


def _build(cls: type, data: Any, where: str, base: Path) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping; received {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("source_file", "stages")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; expected one of {sorted(fields)}"
        )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required key {key!r}")
            if f.metadata.get("path") and isinstance(f.default, str):
                values[name] = _resolve(f.default, base)  # one rule: the config file's folder
            continue
        value = _convert(hints[name], data[name], key, base)
        if f.metadata.get("path") and value is not None:
            value = _resolve(value, base)
        values[name] = value
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None


def _convert(tp: Any, value: Any, key: str, base: Path) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key, base)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}; received {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, base)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list; received {value!r}")
        return [_convert(args[0], v, f"{key}[{i}]", base) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping; received {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}", base) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false; received {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer; received {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}; received {value!r}")
    return value


def _resolve(value: str, base: Path) -> str:
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(base / value)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def to_dict(section: Any) -> dict[str, Any]:
    """A section as plain data (for fingerprints and MLMD properties)."""
    return dataclasses.asdict(section)
