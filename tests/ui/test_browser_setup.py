"""Without chromium the browser tests skip with the reason, and under CI they fail instead."""

from __future__ import annotations

import pytest

from tests.ui import browser


def test_missing_chromium_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("BEAM_PIPELINE_CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser.require_chromium()
    monkeypatch.setenv("BEAM_PIPELINE_CI", "1")
    with pytest.raises(pytest.fail.Exception, match="BEAM_PIPELINE_CI=1"):
        browser.require_chromium()
