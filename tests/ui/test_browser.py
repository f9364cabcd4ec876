"""The UI and the report in a real browser (headless Chromium through Playwright).

One ``beam-pipeline ui`` process on a copy of the shared taxi pipeline serves every test of this
module; each page is watched for console errors, uncaught exceptions and failed requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beam_pipeline.core import registry
from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.views.graph import dot_available
from tests.conftest import run_cli
from tests.pipeline_fixtures import taxi_runs
from tests.ui.browser import ConsoleErrors, browser, require_chromium, ui_server
from tests.ui.monitored import monitored_pipeline

pytestmark = pytest.mark.slow  # the shared pipeline (built once per session)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require_chromium()
    config = monitored_pipeline(tmp_path_factory.mktemp("ui"))  # labels, monitoring reports
    with ui_server(config, "--allow-review", "--poll", "0.5") as base:
        yield base, config


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with browser() as b:
        yield b


def open_page(chromium: object, url: str) -> tuple[object, ConsoleErrors]:
    errors = ConsoleErrors()
    page = errors.watch(chromium.new_page(viewport={"width": 1300, "height": 900}))  # type: ignore[attr-defined]
    page.goto(url, wait_until="networkidle")
    return page, errors


def test_runs_page_lists_the_runs(site: tuple[str, Path], chromium: object) -> None:
    base, _ = site
    page, errors = open_page(chromium, base + "/")
    links = page.locator("a.run-link").all_inner_texts()
    assert links[::-1] == [r["run_id"] for r in taxi_runs()["runs"]]
    page.locator("a.run-link").first.click()
    page.wait_for_selector("svg.graph")
    assert page.locator("svg.graph g.node").count() == 9
    assert page.locator('g.node[data-status="completed"]').count() >= 1
    assert not errors, errors


def test_model_page_shows_metrics_and_a_slice_plot(
    site: tuple[str, Path], chromium: object
) -> None:
    base, _ = site
    page, errors = open_page(chromium, base + "/models/3")
    overall = page.locator("table.overall").inner_text()
    assert "auc" in overall and "baseline" in overall and "log_loss" in overall
    for plot in ("roc", "pr", "calibration"):
        assert page.locator(f"svg.xy-chart.{plot} polyline.series").count() == 2  # vs baseline
    assert page.locator("table.confusion").count() == 2
    fare = page.locator("table.slices").first
    bars = fare.locator("td.bar.m0 .hbar:not(.base)")
    assert bars.count() == 4 and bars.first.is_visible()
    assert float(bars.first.get_attribute("data-value")) > 0
    assert fare.locator("td.bar.m0 .hbar.base").count() == 4  # vs baseline v1
    # The metric selector (CSS only): picking log_loss shows its bars instead of auc's.
    picks = page.locator("input.pick-metric")
    names = [picks.nth(i).get_attribute("value") for i in range(picks.count())]
    page.locator(f"label[for='{picks.nth(names.index('log_loss')).get_attribute('id')}']").click()
    assert not bars.first.is_visible()
    shown = fare.locator(f"td.bar.m{names.index('log_loss')} .hbar:not(.base)").first
    assert shown.is_visible()
    # The minimum-examples filter hides the small cross slices.
    rows = page.locator("table.slices tr[data-examples]")
    small = [
        i for i in range(rows.count()) if int(rows.nth(i).get_attribute("data-examples")) < 100
    ]
    assert small and rows.nth(small[0]).is_visible()
    page.locator("label", has_text="≥ 100").click()
    assert not rows.nth(small[0]).is_visible()
    assert page.locator(".training-curves polyline.series").count() >= 2
    assert not errors, errors


def test_lineage_graph_has_the_expected_nodes(site: tuple[str, Path], chromium: object) -> None:
    base, _ = site
    page, errors = open_page(chromium, base + "/models/3")
    nodes = page.locator("#lineage g.node")
    labels = [nodes.nth(i).get_attribute("data-label") for i in range(nodes.count())]
    for stage in ("ingest", "statistics", "schema", "transform", "tune", "train", "evaluate"):
        assert stage in labels, labels
    assert any(label.startswith("Model #") for label in labels)
    assert any(label.startswith("Examples #") for label in labels)
    assert page.locator("#lineage path.edge").count() >= len(labels) - 1
    engine = "dot" if dot_available() else "layers"  # .ci/run installs graphviz
    assert page.locator("#lineage svg.graph").get_attribute("data-engine") == engine
    # The model is marked and scrolled to the middle of the lineage view.
    box = page.locator("#lineage .scroll").bounding_box()
    node = page.locator("#lineage g.node[data-selected]").bounding_box()
    assert box and node and box["y"] <= node["y"] <= box["y"] + box["height"]
    assert not errors, errors


def test_approve_records_a_review(site: tuple[str, Path], chromium: object) -> None:
    base, config = site
    page, errors = open_page(chromium, base + "/models/3")
    page.fill("#comment", "looked at every slice")
    with page.expect_navigation():
        page.click("#approve")
    assert "latest review: approved" in page.locator(".review").inner_text()
    store = Store(load(config))
    review = registry.latest_review(store, registry.model_by_version(store, 3).id)
    assert review is not None
    assert (review["decision"], review["comment"]) == ("approved", "looked at every slice")
    assert not errors, errors


def test_a_poll_never_aborts_a_submitted_review(site: tuple[str, Path], chromium: object) -> None:
    """The store changes while the review form's POST is in flight (another user, or the POST
    itself): the page's poll sees the new state, and must not reload over the form's navigation
    (it did, under load: net::ERR_ABORTED)."""
    base, config = site
    page, errors = open_page(chromium, base + "/models/1")
    store = Store(load(config))

    def hold(route: object) -> None:
        registry.record_review(store, 1, "rejected", "from the command line, meanwhile")
        time.sleep(1.5)  # three poll periods: each poll sees the changed state
        route.continue_()  # type: ignore[attr-defined]

    page.route("**/models/1/review", hold)  # type: ignore[attr-defined]
    page.fill("#comment", "submitted while the store changed")
    with page.expect_navigation():
        page.click("#approve")
    assert "latest review: approved" in page.locator(".review").inner_text()
    review = registry.latest_review(store, registry.model_by_version(store, 1).id)
    assert review is not None
    assert (review["decision"], review["comment"]) == (
        "approved",
        "submitted while the store changed",
    )
    assert not errors, errors


def test_pages_update_while_the_store_changes(site: tuple[str, Path], chromium: object) -> None:
    base, config = site
    page, errors = open_page(chromium, base + "/models/2")
    assert page.locator(".review").count() == 0
    store = Store(load(config))
    registry.record_review(store, 2, "rejected", "from the command line")  # as `reject` does
    page.wait_for_selector(".review", timeout=15000)  # the page polled and reloaded
    assert "rejected" in page.locator(".review").inner_text()
    assert not errors, errors


def test_screenshots_without_errors(
    site: tuple[str, Path], chromium: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report (a file) and every kind of UI page render without a JS or console error."""
    base, config = site
    report = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(config), "--model", "3", "--output", str(report)], capsys)
    assert code == 0, err
    run_id = taxi_runs()["runs"][0]["run_id"]
    urls = [
        report.as_uri(),
        base + "/",
        base + f"/runs/{run_id}",
        base + "/models",
        base + "/models/1",
        base + "/compare?v=1&v=3",
        base + "/compare?v=2",
        base + "/artifacts/2",
        base + "/monitoring",
    ]
    for url in urls:
        page, errors = open_page(chromium, url)
        shot = tmp_path / f"{len(list(tmp_path.glob('*.png')))}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000, url
        assert page.locator("h1").count() == 1, url
        assert not errors, (url, errors)
        page.close()


def test_monitoring_page_from_real_reports(site: tuple[str, Path], chromium: object) -> None:
    base, _ = site
    page, errors = open_page(chromium, base + "/monitoring")
    reports = page.locator("table.reports tr")
    assert reports.count() == 3  # a header, the drifted window (newest first), the healthy one
    assert "healthy" in reports.nth(2).inner_text() and "alerts" in reports.nth(1).inner_text()
    alerts = page.locator("table.alerts tr").all_inner_texts()
    assert any("skew: payment_type" in a for a in alerts), alerts
    over = page.locator("table.findings tr.blocking").all_inner_texts()
    assert any(a.startswith("skew · fare") for a in over), over
    assert page.locator("table.findings tr:not(.blocking) .distance i").count() > 5  # in bounds
    auc = page.locator("svg.line-chart[aria-label='auc']")
    assert auc.locator("polyline[data-name='v3 live']").count() == 1
    assert auc.locator("circle").count() == 4  # two reports, live and at evaluation
    assert page.locator(".version-label").count() == 0  # none on this page
    page.goto(base + "/models")
    tags = page.locator("table.models .version-label").all_inner_texts()
    assert sorted(tags) == ["canary", "stable"]
    assert not errors, errors


def test_offline_report_in_the_browser(
    site: tuple[str, Path], chromium: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report file: its graphs, plots, selector and filter work with no server and no
    script; it shows the version's labels and the monitoring of the version."""
    _, config = site
    report = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(config), "--model", "3", "--output", str(report)], capsys)
    assert code == 0, err
    page, errors = open_page(chromium, report.as_uri())
    assert page.locator("script").count() == 0
    assert page.locator("#overview .version-label").all_inner_texts() == ["canary", "canary"]
    assert page.locator("svg.graph g.node").count() >= 9 + 12  # the run's DAG and the lineage
    ev = page.locator("#evaluate-evaluation")
    assert ev.locator("svg.xy-chart.roc polyline.series").count() == 2
    first_bar = ev.locator("table.slices").first.locator("td.bar.m0 .hbar").first
    assert first_bar.is_visible()
    ev.locator("label", has_text="log_loss").first.click()
    assert not first_bar.is_visible()
    stats = page.locator("#statistics-statistics svg.stats-hist").first
    assert stats.locator("rect[data-series='train']").count() == 10
    assert stats.locator("rect[data-series='eval']").count() == 10
    assert "Monitoring of v3" in page.locator("#monitoring h2").first.inner_text()
    assert page.locator("#monitoring table.reports tr").count() == 3
    assert not errors, errors


def test_console_errors_are_caught(chromium: object) -> None:
    """The watcher the tests above rely on does see a script error and a console error."""
    errors = ConsoleErrors()
    page = errors.watch(chromium.new_page())  # type: ignore[attr-defined]
    page.set_content("<script>console.error('boom'); undefinedFunction();</script>")
    page.wait_for_timeout(200)
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)
