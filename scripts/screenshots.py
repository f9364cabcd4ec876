"""Screenshots of every web UI page and of a report, for docs/ui.md (docs/ui-*.png, report.png).

    .venv/bin/python scripts/screenshots.py CONFIG --model N [--out docs]

Starts ``beam-pipeline ui`` on the config's store, writes a report of model version N and takes
the pictures with Debian's headless Chromium (/usr/bin/chromium) through Playwright. The pages
show what the store holds: run ``beam-pipeline monitor`` (and ``label``) first for a Monitoring
page with reports and versions with labels. Each page is checked for script errors on the way.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 860}


def pages(model: int, runs: list[dict[str, object]]) -> list[tuple[str, str, str]]:
    """(file name, path, element to scroll to or "")."""
    run_id = str(runs[-1]["run_id"]) if runs else ""
    return [
        ("ui-runs.png", "/", ""),
        ("ui-run.png", f"/runs/{run_id}", ""),
        ("ui.png", f"/models/{model}", "#evaluation"),
        ("ui-slices.png", f"/models/{model}", ".ev-slices"),
        ("ui-lineage.png", f"/models/{model}", "#lineage"),
        ("ui-compare.png", f"/compare?v=1&v=2&v={model}", ""),
        ("ui-statistics.png", "/artifacts/2", ""),
        ("ui-monitoring.png", "/monitoring", ""),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--model", type=int, required=True)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = [sys.executable, "-m", "beam_pipeline.cli"]
    report = Path(tempfile.mkdtemp()) / "report.html"
    subprocess.run([*cli, "report", args.config, "--model", str(args.model), "--output",
                    str(report)], check=True)  # fmt: skip
    runs = json.loads(
        subprocess.run(
            [*cli, "runs", args.config, "--json"], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]  # fmt: skip
    )
    runs = runs.get("runs", runs) if isinstance(runs, dict) else runs
    ui = subprocess.Popen([*cli, "ui", args.config, "--port", str(port)])
    written = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            shots = [(n, base + u, s) for n, u, s in pages(args.model, runs)]
            shots.append(("report.png", report.as_uri(), "#evaluate-evaluation"))
            for name, url, anchor in shots:
                page.goto(url, wait_until="networkidle")
                if anchor:
                    page.locator(anchor).first.scroll_into_view_if_needed()
                    page.evaluate(f"document.querySelector('{anchor}').scrollIntoView()")
                page.screenshot(path=str(out / name))
                written.append(out / name)
            browser.close()
            if errors:
                raise SystemExit(f"script errors on the pages: {errors}")
    finally:
        ui.terminate()
        ui.wait(timeout=20)
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
