"""Screenshots of the web UI and of a report for the README (docs/ui.png, docs/report.png).

    .venv/bin/python scripts/screenshots.py CONFIG --model N [--out docs]

Starts ``beam-pipeline ui`` on the config's store, writes a report of model version N and takes
both pictures with Debian's headless Chromium (/usr/bin/chromium) through Playwright.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
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
    ui = subprocess.Popen([*cli, "ui", args.config, "--port", str(port)])
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
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/models/{args.model}", wait_until="networkidle")
            page.screenshot(path=str(out / "ui.png"))
            page.goto(report.as_uri(), wait_until="load")
            page.locator("#stages").scroll_into_view_if_needed()
            page.screenshot(path=str(out / "report.png"))
            browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=20)
    print(f"wrote {out / 'ui.png'} and {out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
