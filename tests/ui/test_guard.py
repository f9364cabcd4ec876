"""The UI's cross-site checks on their own (no store): Host names, Origin/Referer, the token."""

from __future__ import annotations

import pytest

from beam_pipeline.ui.guard import Token, allowed_names, cross_site_reason, host_allowed, split_host


def scope(host: str, **headers: str) -> dict[str, object]:
    pairs = [(b"host", host.encode())] + [
        (k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()
    ]
    return {"type": "http", "scheme": "http", "headers": pairs}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost.", ("localhost", None)),
        ("[::1]:8080", ("::1", 8080)),
        ("::1", ("::1", None)),
        ("evil.example:x", ("evil.example", -1)),
    ],
)
def test_split_host(value: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(value) == parsed


def test_host_names() -> None:
    local = allowed_names("127.0.0.1")
    assert local == {"localhost"}
    for ok in ("127.0.0.1:8080", "localhost:8080", "[::1]:1", "10.1.2.3", None, ""):
        assert host_allowed(ok, local), ok
    for bad in ("evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io"):
        assert not host_allowed(bad, local), bad
    assert host_allowed("ml.box:80", allowed_names("ml.box"))  # --host by name
    assert host_allowed("ML.internal", allowed_names("0.0.0.0", ["ml.internal"]))
    assert not host_allowed("ml.box", allowed_names("0.0.0.0"))


def test_cross_site_reason() -> None:
    assert cross_site_reason(scope("127.0.0.1:8080")) is None  # no Origin: the token decides
    same = scope("127.0.0.1:8080", origin="http://127.0.0.1:8080", sec_fetch_site="same-origin")
    assert cross_site_reason(same) is None
    assert cross_site_reason(scope("localhost", origin="http://localhost:80")) is None
    assert cross_site_reason(scope("localhost", referer="http://localhost/models/3")) is None
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "https://127.0.0.1:8080"},  # another scheme is another origin
        {"origin": "http://127.0.0.1:8081"},
        {"referer": "http://evil.example/page"},
        {"sec_fetch_site": "same-site"},
        {"sec_fetch_site": "cross-site", "origin": "http://127.0.0.1:8080"},
        {"origin": "http://evil.example", "referer": "http://127.0.0.1:8080/"},  # Origin decides
    ):
        assert cross_site_reason(scope("127.0.0.1:8080", **headers)), headers


def test_token() -> None:
    a, b = Token(), Token()
    assert a.value != b.value and len(a.value) >= 40
    assert a.matches(a.value) and not a.matches(b.value) and not a.matches("")


def test_no_route_reads_a_path(tmp_path) -> None:
    """Every UI route is a fixed path or an integer id: nothing that tries to climb out of them
    reaches a file (on an empty in-memory store, no pipeline needed)."""
    import yaml
    from starlette.testclient import TestClient

    from beam_pipeline.core.config import load
    from beam_pipeline.ui import create_app

    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "p", "root": str(tmp_path / "root")},
                "metadata": {"backend": "memory"},
                "ingest": {"source": "unused.csv"},
            }
        )
    )
    c = TestClient(create_app(load(config)), base_url="http://127.0.0.1:8080")
    assert c.get("/").status_code == 200
    for path in (
        "/static/../../../etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/artifacts/..%2f..%2fmetadata.sqlite",
        "/artifacts/1%2f..",
        "/runs/..%2f..%2fetc%2fpasswd",
        "/models/-1",
        "/%2e%2e/%2e%2e/etc/passwd",
    ):
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "root:" not in r.text
