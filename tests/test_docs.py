"""README.md and docs/: size, table of contents, relative links and anchors, and the commands shown.

A command shown in a code block or an inline code span (``beam-pipeline SUB --flag ...``) must be
one that the tests run: some test invokes that subcommand with each of the flags shown. A block
that only illustrates (a synopsis, a cluster recipe, a ``curl``) is marked by an
``<!-- illustrative -->`` line just above its fence. Scripts shown (``./scripts/NAME``) must exist.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted([REPO / "README.md", *DOCS.glob("*.md")])
MARK = "<!-- illustrative -->"
SUBCOMMANDS_WITHOUT_TESTED_FLAGS = {"tune-worker", "train-worker"}


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((i, line))
    return out


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = text.strip().lower()
    kept = [c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN"]
    return "".join(kept).replace(" ", "-")


def headings(path: Path) -> list[Heading]:
    seen: dict[str, int] = {}
    out = []
    for _, line in prose_lines(path.read_text()):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(Heading(len(m.group(1)), m.group(2), base if n == 0 else f"{base}-{n}"))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in prose_lines(path.read_text()):
        line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
        out += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return out


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    argv: tuple[str, ...]


def shown_commands(path: Path) -> list[Command]:
    """Commands in code blocks (unless marked illustrative) and in inline code spans."""
    lines = path.read_text().splitlines()
    out: list[Command] = []
    fenced, illustrative, previous = False, False, ""
    pending = ""
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if not fenced:
                illustrative = previous == MARK
            fenced = not fenced
            previous = stripped
            continue
        if fenced:
            if illustrative:
                continue
            text = pending + stripped
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            out += _commands_in(text, path, i)
        else:
            for span in re.findall(r"`([^`]+)`", line):
                if span.startswith(("beam-pipeline ", "./scripts/", "scripts/")):
                    out += _commands_in(span, path, i)
        if stripped:
            previous = stripped
    return out


def _commands_in(text: str, path: Path, line: int) -> list[Command]:
    text = re.sub(r"\s#\s.*$", "", text)  # a trailing comment
    m = re.search(r"(?:^|\s)((?:beam-pipeline|\./scripts/\S+|scripts/\S+)(?:\s.*)?)$", text)
    if not m or "…" in m.group(1) or "..." in m.group(1):
        return []  # prose abbreviations ("beam-pipeline runs ...") are not commands
    try:
        argv = tuple(shlex.split(m.group(1)))
    except ValueError:
        return []
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return [Command(rel, line, argv)]


def test_readme_is_a_quick_start() -> None:
    size = (REPO / "README.md").stat().st_size
    assert size <= 30_000, f"README.md is {size} bytes; keep it a quick start (<= 30 KB)"


def test_the_index_lists_every_page_and_section() -> None:
    """docs/index.md is the table of contents: every page and each of its ## sections."""
    index = (DOCS / "index.md").read_text()
    targets = {t for _, t in links(DOCS / "index.md")}
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "index.md":
            continue
        if page.name not in targets:
            missing.append(f"[{headings(page)[0].text}]({page.name})")
        for h in headings(page):
            if h.level == 2 and f"{page.name}#{h.anchor}" not in targets:
                missing.append(f"[{h.text}]({page.name}#{h.anchor})")
    assert not missing, "docs/index.md lacks these entries:\n" + "\n".join(missing)
    assert "](" in index


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(REPO)}:{number}: {target}"
        if not dest.exists():
            broken.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md":
            if anchor not in {h.anchor for h in headings(dest)}:
                broken.append(f"{where}: no heading with anchor #{anchor}")
    assert not broken, "\n".join(broken)


def _test_sources() -> str:
    me = Path(__file__).resolve()
    return "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py") if p != me)


def uncovered(command: Command, tests: str) -> list[str]:
    """What of ``command`` no test runs (empty: covered)."""
    argv = command.argv
    if argv[0] != "beam-pipeline":
        script = REPO / argv[0].removeprefix("./").rstrip(".,:;")
        return [] if script.is_file() else [f"{argv[0]} does not exist"]
    if len(argv) < 2 or argv[1].startswith("-"):
        return []  # `beam-pipeline --help`
    subs = argv[1].rstrip(".,:;").split("|")  # `approve|reject CONFIG ...`: each of them
    missing = [s for s in subs if not re.search(rf"""["']{re.escape(s)}["']""", tests)]
    if missing:
        return [f"no test runs `beam-pipeline {s}`" for s in missing]
    sub = subs[0]
    if sub in SUBCOMMANDS_WITHOUT_TESTED_FLAGS:
        return []
    flags = {a.split("=", 1)[0] for a in argv[2:] if a.startswith("--")}
    return [
        f"no test passes {flag} to `{sub}`"
        for flag in sorted(flags)
        if not re.search(rf"""["']{re.escape(flag)}(=|["'])""", tests)
    ]


def test_every_command_shown_is_run_by_a_test_or_marked_illustrative() -> None:
    tests = _test_sources()
    problems = []
    for page in PAGES:
        for command in shown_commands(page):
            for problem in uncovered(command, tests):
                problems.append(f"{command.page}:{command.line}: {problem}")
    assert not problems, f"test it, or put {MARK} on the line above its code block:\n" + "\n".join(
        problems
    )


def test_the_checks_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading, too!\n\n[ok](#a-code-heading-too) [bad](#nope)\n\n"
        "```bash\nbeam-pipeline frobnicate CONFIG --wobble\n```\n\n"
        f"{MARK}\n```bash\nbeam-pipeline frobnicate CONFIG\n```\n"
    )
    assert [h.anchor for h in headings(page)] == ["title", "a-code-heading-too"]
    assert [t for _, t in links(page)] == ["#a-code-heading-too", "#nope"]
    commands = shown_commands(page)
    assert [c.argv for c in commands] == [("beam-pipeline", "frobnicate", "CONFIG", "--wobble")]
    assert uncovered(commands[0], "") == ["no test runs `beam-pipeline frobnicate`"]
    assert uncovered(commands[0], '"frobnicate"') == ["no test passes --wobble to `frobnicate`"]
