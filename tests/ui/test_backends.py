"""The UI over MySQL/MariaDB and PostgreSQL stores (the servers `.ci/run` starts).

A real (small) run and, on MySQL, a failed one are recorded in a fresh database through the Python
API, then the UI's pages are read through Starlette's test client. SQLite is covered by the other
UI tests. Servers that cannot be reached skip, except under ``BEAM_PIPELINE_CI=1``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import beam_pipeline as bp
from beam_pipeline.core.errors import StageFailed
from beam_pipeline.ui import create_app
from tests import test_metadata_backends as backends
from tests.conftest import write_config


@pytest.fixture(params=sorted(backends.SERVERS))
def db(request: pytest.FixtureRequest) -> Iterator[tuple[backends.Server, str]]:
    server = backends.server_for(request.param)
    name = f"bp_ui_{uuid.uuid4().hex[:12]}"
    yield server, name
    try:
        backends.drop_database(server, name)
    except Exception as exc:  # a leftover database must not fail the test that used it
        import warnings

        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


def test_ui_pages_on_a_server_store(
    db: tuple[backends.Server, str],
    tiny_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, database = db
    monkeypatch.setenv("BP_UI_DB_PASSWORD", server.password)
    metadata = {
        "backend": server.backend,
        "host": server.host,
        "port": server.port,
        "database": database,
        "user": server.user,
        "password_env": "BP_UI_DB_PASSWORD",
    }
    transform = {"module": str(Path(__file__).resolve().parents[2] / "transforms" / "taxi.py")}
    config = write_config(
        tmp_path,
        {"source": str(tiny_csv), "max_rejected_fraction": 0.2},
        metadata=metadata,
        transform=transform,  # the config check passes; the stage itself fails (no schema)
    )
    p = bp.load(config)
    good = p.run(to="ingest", progress=False)
    failed = None
    if server.backend == "mysql":
        # ml-metadata 1.16 cannot store this run's summary in PostgreSQL (a string holding a
        # quote and a backslash is sent as a broken E'...' literal), so the failed run is shown
        # on MySQL only.
        with pytest.raises(StageFailed, match="stage 'transform' failed"):
            p.run_stage("transform", progress=False)  # schema never ran: the stage fails
        failed = p.runs()[-1]

    c = TestClient(create_app(p.config), base_url="http://127.0.0.1:8080")  # not "testserver"
    runs = c.get("/")
    assert runs.status_code == 200
    assert good.run_id in runs.text
    if failed is not None:
        assert failed["run_id"] in runs.text
        page = c.get(f"/runs/{failed['run_id']}")
        assert page.status_code == 200 and "class='bad error'" in page.text
        assert "has no completed result" in page.text
    page = c.get(f"/runs/{good.run_id}")
    assert page.text.count('data-status="completed"') == 1
    examples = good.output("ingest")
    art = c.get(f"/artifacts/{examples.id}")
    assert art.status_code == 200 and "Sample (train)" in art.text and "oslo" in art.text
    assert 'data-label="ingest"' in art.text  # its lineage graph
    assert c.get("/models").status_code == 200
