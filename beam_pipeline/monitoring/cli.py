"""What ``beam-pipeline monitor`` does with its flags: one round, retraining, ``--watch``.

Exit codes: 0 healthy (or an empty window), 4 an alert fired (also when a retraining followed it
and trained a version, pushed or not), 1 the retraining run failed or was stopped (its JSON
says why: ``retrained`` false, ``status``, ``reason``), 2 a wrong flag or config.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.monitoring.monitor import monitor, section_of

log = logging.getLogger("beam_pipeline.monitoring")

ALERT_EXIT = 4


def one_round(
    config: Config,
    *,
    since: str | None,
    until: str | None,
    version: int | None,
    retrain: bool,
    beam_args: list[str],
    run_pipeline: Callable[[list[str]], Any],
) -> tuple[dict[str, Any], int]:
    """Monitor one window, retrain when asked or when ``monitor.retrain_on`` says; (body, code)."""
    from beam_pipeline.monitoring.retrain import retrain as do_retrain

    body = monitor(config, since=since, until=until, version=version, beam_args=beam_args)
    if body.get("empty"):
        log.info("monitor: %s", body["message"])
        return body, 0
    section = section_of(config)
    triggered = sorted(set(body["alert_kinds"]) & set(section.retrain_on))
    code = ALERT_EXIT if body["alerts"] else 0
    if retrain or triggered:
        why = "--retrain" if retrain else f"monitor.retrain_on: {', '.join(triggered)}"
        log.info("monitor: retraining (%s)", why)
        result = do_retrain(config, body, run_pipeline)
        result["trigger"] = why
        body["retrain"] = result
        if result.get("status") is None:
            log.warning("monitor: not retrained: %s", result["reason"])
        elif result["status"] != "completed":
            log.error("monitor: not retrained: %s", result["reason"])
            code = 1
        else:
            log.info("monitor: retrained on span %s: %s", result["span"], result["reason"])
    return body, code


def main(
    config: Config,
    args: argparse.Namespace,
    beam_args: list[str],
    run_pipeline: Callable[[list[str]], Any],
) -> int:
    if args.rounds is not None and (not args.watch or args.rounds < 1):
        raise ConfigError("--rounds: expected a number >= 1, with --watch")
    if not args.watch:
        body, code = one_round(
            config,
            since=args.since,
            until=args.until,
            version=args.model,
            retrain=args.retrain,
            beam_args=beam_args,
            run_pipeline=run_pipeline,
        )
        _show(body, args.json)
        return code
    return watch(config, args, beam_args, run_pipeline)


def watch(
    config: Config,
    args: argparse.Namespace,
    beam_args: list[str],
    run_pipeline: Callable[[list[str]], Any],
) -> int:
    """Repeat every ``monitor.watch_interval`` seconds; each window starts where the last ended.

    A round that fails is logged and the watch goes on; the retraining lock keeps two monitors
    (two watches, or a watch and a manual ``--retrain``) from retraining at once.
    """
    from beam_pipeline.core.errors import PipelineError
    from beam_pipeline.monitoring.logs import iso, parse_time

    interval = section_of(config).watch_interval
    since, rounds, code = args.since, 0, 0
    while True:
        started = time.time()
        until = iso(parse_time(None))
        try:
            body, code = one_round(
                config,
                since=since,
                until=until,
                version=args.model,
                retrain=args.retrain,
                beam_args=beam_args,
                run_pipeline=run_pipeline,
            )
            _show(body, args.json)
            since = until
        except PipelineError as exc:
            log.error("monitor: round failed: %s", exc)
            code = exc.exit_code
        rounds += 1
        if args.rounds is not None and rounds >= args.rounds:
            return code
        time.sleep(max(0.0, interval - (time.time() - started)))


def _show(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        from beam_pipeline.core.jsonout import dumps

        print(dumps(body))  # the one time format of every --json
        return
    if body.get("empty"):
        print(body["message"])
        return
    from pathlib import Path

    print((Path(body["report_dir"]) / "report.txt").read_text(), end="")
    print(f"report: {body['report_dir']}/report.html (MonitoringReport #{body['artifact']})")
    if body.get("retrain"):
        r = body["retrain"]
        if r.get("span") is not None:
            print(
                f"span {r['span']} ({r['rows']} rows{', reused' if r['span_reused'] else ''}); "
                f"drift acknowledged for {', '.join(r['acknowledged']['features']) or '-'}; "
                f"run {r['run_id']} {r['status']}"
            )
        print(f"{'retrained' if r['retrained'] else 'not retrained'}: {r['reason']}")
