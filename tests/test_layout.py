"""One catalog owns the on-disk layout; the layers import downwards only (issue 10, item 8)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from beam_pipeline.core.orchestrator import order
from beam_pipeline.core.stage_sections import STAGE_ORDER

PACKAGE = Path(__file__).resolve().parent.parent / "beam_pipeline"
CORE = sorted(f.name for f in (PACKAGE / "core").glob("*.py"))
# Parts above core: nothing in core/ may import them (imports point down only).
ABOVE_CORE = ("stages", "jobs", "serving", "monitoring", "ui", "views", "api", "cli", "training")


def _imports(file: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_stage_imports_another_and_core_imports_no_stage() -> None:
    stage_files = [f for f in (PACKAGE / "stages").glob("*.py") if f.name != "__init__.py"]
    stages = {f"beam_pipeline.stages.{f.stem}" for f in stage_files}
    # Only stages live in stages/; helpers such as modeling sit at the package level.
    assert sorted(f.stem for f in stage_files) == sorted(STAGE_ORDER)
    for f in stage_files:
        assert not (_imports(f) & stages), f"{f.name} imports another stage"
    for name in CORE:
        above = tuple(f"beam_pipeline.{part}" for part in ABOVE_CORE)
        bad = {i for i in _imports(PACKAGE / "core" / name) if i.startswith(above)}
        assert not bad, f"core module {name} imports {bad}"


def test_package_root_holds_only_the_faces() -> None:
    # sections.py is the config seam above core (it collects every section, serving's too).
    # Everything else lives in a folder named for its layer (core/, stages/, jobs/, io/, ...).
    root = sorted(f.name for f in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "api.py", "cli.py", "progress.py", "sections.py"]


def test_layout_names_are_spelled_in_artifacts_only() -> None:
    # Our artifacts' names; TF Serving's own "saved_model.pb" inside a version folder is not one.
    pattern = re.compile(r"""["'](saved_model["'/]|schema\.pbtxt|FeatureStats\.pb|Split-)""")
    for f in PACKAGE.rglob("*.py"):
        if f.name == "artifacts.py":
            continue
        hits = [line for line in f.read_text().splitlines() if pattern.search(line)]
        assert not hits, f"{f.relative_to(PACKAGE)} spells the layout: {hits}"


def test_transform_runs_after_validate_without_reading_its_output() -> None:
    from beam_pipeline.stages import STAGES

    transform = STAGES["transform"]
    assert "validate" in transform.after
    assert not any(ref.startswith("validate.") for ref in transform.inputs.values())
    names = order(STAGES)
    assert names.index("validate") < names.index("transform")
