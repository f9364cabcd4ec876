"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright, and the UI started as
``beam-pipeline ui`` in a child process. Playwright's own browser downloads are never used.

Without chromium the browser tests skip with the reason, except under ``BEAM_PIPELINE_CI=1``
(``.ci/run`` installs it), where they fail: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BEAM_PIPELINE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]


def require_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
    if os.environ.get("BEAM_PIPELINE_CI") == "1":
        pytest.fail(f"{reason} (BEAM_PIPELINE_CI=1: .ci/run installs it)")
    pytest.skip(reason)


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A Playwright Chromium browser on the system chromium."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class ConsoleErrors(list):
    """Console errors, uncaught page errors and failed requests of a page; a test fails on any.

    A poll that a navigation cancels (``net::ERR_ABORTED``) is not a failure.
    """

    def _failed(self, request: Any) -> None:
        if request.failure != "net::ERR_ABORTED":
            self.append(f"request failed: {request.url} ({request.failure})")

    def watch(self, page: Any) -> Any:
        page.on(
            "console",
            lambda m: self.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        return page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ui_server(config: Path, *extra: str) -> Iterator[str]:
    """``beam-pipeline ui CONFIG --port P`` in a child process; its base URL; always stopped."""
    port = free_port()
    log = config.parent / f"ui-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beam_pipeline.cli",
                "ui",
                str(config),
                "--port",
                str(port),
                *extra,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"the UI did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
