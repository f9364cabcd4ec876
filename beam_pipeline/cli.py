"""The `beam-pipeline` command line.

Exit codes: 0 the run finished; 1 a stage failed; 2 the command or config is wrong; 3 the
validation gate stopped the run; 4 ``monitor`` raised an alert. The process leaves through
`os._exit` after flushing, because TensorFlow/tf.Transform can crash during interpreter shutdown
after a successful run.

Every command is a ``cmd_*`` function registered in `_parser` and `COMMANDS`. What all of them
share is applied here, also to commands added later: ``--json`` output goes through `emit_json`
(ISO-8601 times, JSON booleans), a flag without help text gets a generic one, and `main` is the
one error edge (one ``error:`` line and the exit code; the traceback with ``-v``; under
``--json`` also a JSON object with ``error``; a closed pipe on stdout ends quietly).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.errors import ConfigError, PipelineError
from beam_pipeline.core.jsonout import iso_time

if TYPE_CHECKING:  # the CLI starts light: the config and the store are imported per command
    from beam_pipeline.core.config import Config
    from beam_pipeline.core.metadata import Store

log = logging.getLogger("beam_pipeline")


EXIT_CODES = """exit codes:
  0  done (a run finished: completed, or cached)
  1  a stage failed, or the store, a file or the disk refused (the message names it)
  2  the command, the config or a user module is wrong (the message names the file and key)
  3  the validation gate stopped the run (each blocking anomaly is listed)
  4  monitor raised an alert"""

# Help for flags that a command registers without any (a command added later included).
GENERIC_HELP = {
    "json": 'print the result as JSON on stdout (errors too, as {"error": ...})',
    "comment": "why (recorded in ML Metadata)",
    "runner": "Beam runner (overrides beam.runner)",
    "beam_option": "a Beam pipeline option, e.g. --beam-option=--project=p (repeatable)",
}


def _parser() -> argparse.ArgumentParser:
    from beam_pipeline.core.stage_sections import STAGE_ORDER

    p = argparse.ArgumentParser(
        prog="beam-pipeline",
        description=__doc__.split("\n")[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.add_argument("config", help="pipeline config (YAML)")
        sp.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value (repeatable)",
        )
        sp.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)
        return sp

    run = add("run", "run the pipeline (cached stages are reused)")
    stages = ", ".join(STAGE_ORDER)
    run.add_argument(
        "--from", dest="from_", metavar="STAGE", help=f"start at this stage (one of {stages})"
    )
    run.add_argument("--to", metavar="STAGE", help=f"stop after this stage (one of {stages})")
    run.add_argument("--only", metavar="STAGE", help=f"run this stage alone (one of {stages})")
    run.add_argument("--no-cache", action="store_true", help="rerun every selected stage")
    run.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    run.add_argument("--runner", help="Beam runner (overrides beam.runner)")
    run.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="FLAG",
        help="a Beam pipeline option, e.g. --beam-option=--project=p (repeatable)",
    )

    runs = add("runs", "list the runs of this pipeline")
    runs.add_argument("--json", action="store_true")

    lineage = add("lineage", "print what produced an artifact (or a model version), recursively")
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--artifact", type=int, metavar="ID", help="an artifact id (see run --json)")
    which.add_argument(
        "--model",
        type=int,
        metavar="VERSION",
        help="a model version: what produced it and what came after",
    )
    lineage.add_argument("--json", action="store_true")

    models = add("models", "list the model versions: metrics, blessing, approval, push state")
    models.add_argument("--json", action="store_true")

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        review = add(name, f"{verb} a model version (manual review before push)")
        review.add_argument(
            "--model", type=int, required=True, metavar="VERSION", help="the model version"
        )
        review.add_argument("--comment", default="", help="why (recorded in ML Metadata)")
        review.add_argument("--json", action="store_true")

    rollback = add("rollback", "serve an older pushed version again (newer ones are retired)")
    rollback.add_argument(
        "--to", type=int, required=True, metavar="VERSION", help="the pushed version to serve"
    )
    rollback.add_argument("--comment", default="")
    rollback.add_argument("--json", action="store_true")

    score = add("score", "batch scoring job on Beam: raw files in, predictions out")
    score.add_argument("--input", required=True, metavar="GLOB", help="CSV, Parquet or JSONL files")
    score.add_argument(
        "--output", required=True, metavar="DIR", help="a new or empty folder for predictions"
    )
    score.add_argument(
        "--model", type=int, metavar="VERSION", help="the model version (default: the served one)"
    )
    score.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "csv", "parquet", "tfrecord"],
        help="the predictions' file format (default: jsonl)",
    )
    score.add_argument(
        "--input-format",
        choices=["csv", "parquet", "jsonl"],
        help="default: from the file extension",
    )
    score.add_argument(
        "--batch-size", type=int, default=8192, help="rows per model call (default: 8192)"
    )
    score.add_argument("--runner", help="Beam runner (overrides beam.runner)")
    score.add_argument("--beam-option", action="append", default=[], metavar="FLAG")
    score.add_argument("--json", action="store_true")

    serve = add("serve", "serve the pushed models: TF Serving's REST and gRPC APIs")
    serve.add_argument("--host", help="default: serving.host (127.0.0.1)")
    serve.add_argument("--port", type=int, help="REST port (default: serving.port, 8501)")
    serve.add_argument(
        "--grpc-port", type=int, help="gRPC port, 0 for none (default: serving.grpc_port, 8500)"
    )
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="serve another model from DIR/{version}/ (repeatable)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="serve processes sharing the ports (default: serving.workers, 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    feedback = add("feedback", "import ground-truth labels (CSV: request_id,label) for served rows")
    feedback.add_argument("--input", required=True, metavar="CSV")
    feedback.add_argument("--model-name", help="default: pipeline.name")
    feedback.add_argument("--json", action="store_true")

    label = add("label", "point a version label (stable, canary) of a served model at a version")
    label.add_argument("--label", required=True)
    label.add_argument("--version", type=int, metavar="VERSION", help="omit with --remove")
    label.add_argument("--remove", action="store_true", help="remove the label")
    label.add_argument("--model-name", help="default: pipeline.name")
    label.add_argument("--json", action="store_true")
    monitor = add(
        "monitor", "feedback loop: traffic, live quality, skew and drift of served models"
    )
    monitor.add_argument("--since", metavar="T", help="window start: ISO time or age (24h, 7d)")
    monitor.add_argument("--until", metavar="T", help="window end: ISO time (default: now)")
    monitor.add_argument("--model", type=int, metavar="VERSION", help="this version's traffic only")
    monitor.add_argument(
        "--retrain", action="store_true", help="turn labelled traffic into a span and retrain"
    )
    monitor.add_argument(
        "--watch", action="store_true", help="repeat every monitor.watch_interval seconds"
    )
    monitor.add_argument("--rounds", type=int, metavar="N", help="with --watch: stop after N")
    monitor.add_argument("--runner", help="Beam runner (overrides beam.runner)")
    monitor.add_argument("--beam-option", action="append", default=[], metavar="FLAG")
    monitor.add_argument("--json", action="store_true", help="print the report as JSON")

    schema = add("schema", "export a passing run's schema for curation, or accept an evolved one")
    what = schema.add_mutually_exclusive_group(required=True)
    what.add_argument("--export", metavar="PATH", help="a file, or a folder for schema.pbtxt")
    what.add_argument(
        "--accept",
        action="store_true",
        help="infer the schema of the newest run's (or --run's) data and check later runs "
        "against it",
    )
    schema.add_argument(
        "--run", metavar="RUN_ID", help="the run whose schema (or statistics) to use"
    )
    schema.add_argument(
        "--force", action="store_true", help="overwrite an existing file (a curated schema!)"
    )
    schema.add_argument("--json", action="store_true")

    doctor = add(
        "doctor",
        "find and repair what a crash left: dead executions and runs, orphan folders, "
        "dangling metadata references",
    )
    doctor.add_argument("--dry-run", action="store_true", help="report only; repair nothing")
    doctor.add_argument("--beam-option", action="append", default=[], metavar="FLAG")
    doctor.add_argument("--json", action="store_true")

    report = add("report", "one self-contained, offline HTML page about a run or a model")
    target = report.add_mutually_exclusive_group()
    target.add_argument("--run", metavar="ID", help="a run id (default: the newest run)")
    target.add_argument("--model", type=int, metavar="VERSION", help="the run that trained it")
    report.add_argument("--output", required=True, metavar="FILE.html")
    report.add_argument("--json", action="store_true")

    ui = add("ui", "web UI over the metadata store: runs, models, lineage")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8080)
    ui.add_argument("--allow-review", action="store_true", help="allow approve/reject from the UI")
    ui.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="refresh period")
    ui.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers use to reach the UI (besides localhost and IPs); repeatable",
    )

    init = sub.add_parser(
        "init",
        help="scaffold a pipeline from a data file: configs/, transforms/ and models/NAME",
        description="Read a sample of FILE, infer column types and the task from the label, and "
        "write configs/NAME.yaml, transforms/NAME.py and models/NAME.py (run them with "
        "`beam-pipeline run configs/NAME.yaml`).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("name", metavar="NAME", help="the pipeline name (letters, digits, - and _)")
    init.add_argument("--data", required=True, metavar="FILE", help="a CSV, Parquet or JSONL file")
    init.add_argument("--label", required=True, metavar="COLUMN", help="the column to predict")
    init.add_argument("--dir", default=".", metavar="DIR", help="write under DIR (default: .)")
    init.add_argument(
        "--task",
        default="auto",
        choices=["auto", "binary", "multiclass", "regression"],
        help="default: from the label (text or 2 values: classes; many numbers: regression)",
    )
    init.add_argument(
        "--format", choices=["csv", "parquet", "jsonl"], help="default: from the file extension"
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument("--json", action="store_true")
    init.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    add("tune-worker", "a keras-tuner worker (KERASTUNER_* set) sharing the chief's trials")
    add("train-worker", "a non-chief multi-worker training process (TF_CONFIG set)")
    return p


def _complete_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every flag of every command help text (`GENERIC_HELP` where the command has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_help(sub)
        elif action.help is None and action.option_strings:
            action.help = GENERIC_HELP.get(action.dest, action.dest.replace("_", " "))
    return parser


def _setup_logging(verbose: bool) -> None:
    """Plain lines on stderr; in an interactive terminal, rich's lines on the console that the
    progress display shares (so a log line never glues onto a bar)."""
    from beam_pipeline import progress

    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(message)s" if verbose else "%(message)s"
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=progress.console(), show_path=False, markup=False)
        fmt = "%(message)s"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format=fmt,
        datefmt="%H:%M:%S",
        handlers=[handler],
    )
    logging.getLogger("beam_pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        progress.unquiet()
    else:
        progress.quiet_stack()
        for handler in logging.getLogger().handlers:
            handler.addFilter(progress._drop_noise)
        import warnings

        warnings.filterwarnings("ignore")


def _load(args: argparse.Namespace) -> Any:
    from beam_pipeline.core.config import load

    return load(args.config, args.overrides)


def _beam_args(args: argparse.Namespace) -> list[str]:
    """``--runner`` and ``--beam-option`` flags as Beam pipeline options (the runner first)."""
    return ([f"--runner={args.runner}"] if args.runner else []) + list(args.beam_option)


def cmd_run(args: argparse.Namespace) -> int:
    from beam_pipeline.core.orchestrator import select
    from beam_pipeline.core.stage_sections import STAGE_ORDER

    config = _load(args)
    # A wrong stage name is known before any stage module loads or any store is opened.
    selected = select(STAGE_ORDER, args.from_, args.to, args.only)
    from beam_pipeline import progress
    from beam_pipeline.api import Pipeline
    from beam_pipeline.core import preflight

    extra = _beam_args(args)
    preflight.check(config, selected, extra)  # every mistake now, before the first stage
    orch = Pipeline(config).orchestrator(
        beam_args=extra,
        use_cache=not args.no_cache,
        command=shlex.join(["beam-pipeline", *args.argv]),
    )
    try:
        with progress.session():
            result = orch.run(args.from_, args.to, args.only)
    finally:
        orch.store.close()
    if args.json:
        emit_json(result.to_json())
    for a in result.anomalies:  # blocking ones are in the error below
        if not a.get("blocking"):
            print(
                f"warning (not blocking): validate: {a['split']}: {a['feature']}: {a['kind']}: "
                f"{a['description']}",
                file=sys.stderr,
            )
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    else:
        log.info("run %s %s; artifacts under %s", result.run_id, result.status, config.root)
    return result.exit_code


def cmd_runs(args: argparse.Namespace) -> int:
    from beam_pipeline.core.jsonout import public_run
    from beam_pipeline.core.metadata import Store

    store = Store(_load(args), create=False)
    settled = store.settle_runs(write=False)  # a killed run reads "canceled", not "running"
    runs = [public_run({**r, "stages": run_stages(store, r)}) for r in settled]
    if args.json:
        emit_json({"runs": runs})
        return 0
    print(f"{'run':28} {'status':24} {'started':19} {'seconds':>8}  stages")
    for r in runs:
        status = r.get("status", "?")
        if r.get("stage") and status in ("failed", "canceled"):
            status += f" in {r['stage']}"
        brief = " ".join(f"{k}:{v.get('status', '?')}" for k, v in r["stages"].items())
        started = iso_time(r["started"])[:19].replace("T", " ") if r.get("started") else ""
        seconds = r.get("seconds") or 0.0
        print(f"{r['run_id']:28} {status:24} {started:19} {seconds:8.1f}  {brief}")
    return 0


def run_stages(store: Store, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's stages in pipeline order: from its summary when it finished, else (killed, or
    still running) from its executions as the UI's run page reads them."""
    from beam_pipeline.core.stage_sections import STAGE_ORDER

    stages = dict((record.get("summary") or {}).get("stages") or {})
    if not stages:
        from beam_pipeline.views.runs import load_run

        gone = record.get("status") in ("canceled", "failed")  # its process is gone
        for row in load_run(store, record).stages:
            status = "canceled" if gone and row.status == "running" else row.status
            stages[row.name] = {"status": status, "seconds": row.seconds}
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return {k: stages[k] for k in sorted(stages, key=lambda k: (rank.get(k, len(rank)), k))}


def cmd_lineage(args: argparse.Namespace) -> int:
    from beam_pipeline.core.metadata import Store

    config = _load(args)
    store = Store(config, create=False)
    if args.model is not None:
        return _model_lineage(config, store, args.model, args.json)
    try:
        tree = store.lineage(args.artifact)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"--artifact: no artifact with id {args.artifact}") from exc
    if args.json:
        emit_json(tree)
    else:
        _print_lineage(tree, 0, set())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from beam_pipeline.core.artifacts import SCHEMA_FILE
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.stages.schema import export_latest

    config = _load(args)
    if args.accept:
        from beam_pipeline.stages.schema import accept

        art = accept(Store(config, create=False), config.root, config.section("schema"), args.run)
        if args.json:
            emit_json({"schema": str(art.path / SCHEMA_FILE), "artifact_id": art.id})
        else:
            log.info("schema accepted (artifact %s): later runs are checked against it", art.id)
        return 0
    target = Path(args.export)
    if target.is_dir():
        target = target / SCHEMA_FILE
    if target.exists() and not args.force:
        raise ConfigError(
            f"--export: {target} exists (a curated schema?); pass --force to overwrite it"
        )
    dest = export_latest(Store(config, create=False), args.export, args.run)
    if args.json:
        emit_json({"schema": dest})
    else:
        log.info("schema written to %s: edit it, then name it in schema.path", dest)
    return 0


# ---------------------------------------------------------------------------------------------
# The model registry: models, lineage --model, approve/reject, rollback, score


def _model_lineage(config: Config, store: Store, version: int, as_json: bool) -> int:
    from beam_pipeline.core import registry

    model = registry.model_by_version(store, version)
    tree = {
        "model_version": version,
        "upstream": store.lineage(model.id),
        "downstream": registry.downstream(store, model),
    }
    if as_json:
        emit_json(tree)
        return 0
    print(f"model version {version} of {config.pipeline.name}")
    print("what produced it:")
    _print_lineage(tree["upstream"], 1, set())
    print("what came after:")
    if not tree["downstream"]:
        print("  nothing yet")
    for item in tree["downstream"]:
        head = f"  {item['kind']} (execution {item['execution']}, {item['state']}"
        head += f", run {item['run_id']})" if item.get("run_id") else ")"
        if item.get("role") and item["role"] != "model":
            head += f" as {item['role']}"
        print(head)
        for key in registry.DOWNSTREAM_KEYS:
            if item.get(key) not in (None, "", []):
                print(f"    {key}: {item[key]}")
        for key, out in item["outputs"].items():
            shown = {k: v for k, v in out.items() if k not in ("id", "type", "uri")}
            print(f"    → {key}: {out['type']} #{out['id']} {out['uri']}")
            for k, v in shown.items():
                print(f"        {k}: {_short(v)}")
    return 0


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()
        )
    return str(value)


def _print_lineage(node: dict[str, Any], depth: int, seen: set[int]) -> None:
    """An artifact, its key properties and, recursively, what produced it (hashes of the config
    and user module included); an artifact met again is not expanded twice."""
    pad = "  " * depth
    a = node["artifact"]
    if a["id"] in seen:
        print(f"{pad}{a['type']} #{a['id']} (shown above)")
        return
    seen.add(a["id"])
    print(f"{pad}{a['type']} #{a['id']} {a['uri']}")
    for k in (
        "fingerprint",
        "data_fingerprint",
        "span",
        "row_counts",
        "source",
        "passed",
        "values",
        "metrics",
        "label_key",
        "module",
        "blessed",
        "window",
        "predictions",
        "labelled",
        "alert_kinds",
        "rows",
        "request_ids",
    ):
        if a.get(k) not in (None, "", {}):
            print(f"{pad}  {k}: {_short(a[k])}")
    prod = node.get("produced_by")
    if prod:
        from beam_pipeline.core.artifacts import digest

        config_hash = digest(prod.get("config"))[:16]
        print(
            f"{pad}  ← {prod['stage']} (execution {prod['execution']}, run {prod['run_id']}, "
            f"{prod['state']}, key {prod['cache_key']}, config {config_hash}"
            + (f", module {prod['module_hash']}" if prod.get("module_hash") else "")
            + ")"
        )
        for key, child in prod["inputs"].items():
            print(f"{pad}    {key}:")
            _print_lineage(child, depth + 3, seen)


def cmd_models(args: argparse.Namespace) -> int:
    import datetime as dt

    from beam_pipeline.core import registry
    from beam_pipeline.core.metadata import Store

    config = _load(args)
    records = registry.describe(config, Store(config, create=False))
    if args.json:
        emit_json({"models": [r.to_json() for r in records]})
        return 0
    if not records:
        print("no models yet: run the pipeline first")
        return 0
    print(
        f"{'ver':>3} {'created':16} {'blessed':8} {'vs':>3} {'approval':9} {'pushed':7} "
        f"{'data':12} metrics"
    )
    for r in records:
        created = (
            dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M") if r.created else "?"
        )
        blessed = {True: "yes", False: "no", None: "-"}[r.blessed]
        pushed = "served" if r.served else "retired" if r.retired else ("yes" if r.pushed else "no")
        metrics = r.eval_metrics or r.train_metrics
        shown = " ".join(
            f"{k}={v:.4f}"
            for k, v in metrics.items()
            if isinstance(v, float) and k not in ("example_count", "label_mean", "prediction_mean")
        )
        print(
            f"{r.version:>3} {created:16} {blessed:8} {r.baseline_version or '-':>3} "
            f"{r.approval or '-':9} {pushed:7} {(r.data_fingerprint or '-')[:12]:12} {shown}"
        )
    return 0


def _review(args: argparse.Namespace, decision: str) -> int:
    from beam_pipeline.core import registry
    from beam_pipeline.core.metadata import Store

    config = _load(args)
    review = registry.record_review(Store(config, create=False), args.model, decision, args.comment)
    if args.json:
        emit_json(review)
    elif decision == "approved":
        log.info(
            "model version %s approved by %s; push with: beam-pipeline run %s --only push",
            args.model,
            review["user"],
            args.config,
        )
    else:
        log.info(
            "model version %s rejected by %s; it will not be pushed",
            args.model,
            review["user"],
        )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _review(args, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    return _review(args, "rejected")


def cmd_rollback(args: argparse.Namespace) -> int:
    from beam_pipeline.core import registry
    from beam_pipeline.core.metadata import Store

    config = _load(args)
    record = registry.rollback(config, Store(config, create=False), args.to, args.comment)
    if args.json:
        shown = {k: v for k, v in record.items() if k != "to_version"}
        emit_json({"model_version": record["to_version"], **shown})
    else:
        log.info(
            "serving version %s of %s; retired %s",
            args.to,
            config.pipeline.name,
            record["retired"] or "nothing",
        )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from beam_pipeline.api import Pipeline

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected >= 1; received {args.batch_size}")
    summary = Pipeline(_load(args)).score(
        absolute(args.input),  # lineage records where the data was, not where the shell was
        absolute(args.output),
        model=args.model,
        format=args.format,
        input_format=args.input_format,
        batch_size=args.batch_size,
        beam_args=_beam_args(args),
    )
    if args.json:
        emit_json(summary)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from beam_pipeline.serving.server import serve, serving_section

    config = _load(args)
    section = serving_section(config)
    port = section.port if args.port is None else args.port
    grpc_port = section.grpc_port if args.grpc_port is None else args.grpc_port
    workers = section.workers if args.workers is None else args.workers
    if args.worker:  # one of several (`serving.workers`): the ports are shared
        serve(config, args.host or section.host, port, grpc_port, args.model, shared=True)
        return 0
    if workers < 1:
        raise ConfigError(f"--workers: expected >= 1; received {workers}")
    if workers == 1:
        serve(config, args.host or section.host, port, grpc_port, args.model)
        return 0
    if port == 0:
        raise ConfigError("serve: several workers share a fixed REST port; received --port 0")
    from beam_pipeline.serving.workers import supervise

    return supervise(_without_flag(args.argv, "--workers"), workers)


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag VALUE`` and ``flag=VALUE``."""
    kept: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            kept.append(a)
    return kept


def cmd_feedback(args: argparse.Namespace) -> int:
    from beam_pipeline.serving.feedback import import_labels

    summary = import_labels(_load(args), args.input, args.model_name)
    if args.json:
        name = summary.pop("model", None)
        emit_json({"model_name": name, **summary})
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from beam_pipeline.serving.models import read_labels, write_labels
    from beam_pipeline.serving.section import check_model_name
    from beam_pipeline.serving.server import model_sources

    config = _load(args)
    name = args.model_name or config.pipeline.name
    sources = model_sources(config, [])
    if name not in sources:
        raise ConfigError(f"--model-name: {name!r} is not served; models are {sorted(sources)}")
    check_model_name(args.label, "--label")
    labels = read_labels(sources[name])
    if args.remove:
        labels.pop(args.label, None)
    elif args.version is None or args.version < 1:
        raise ConfigError("--version: expected a version >= 1 (or --remove)")
    else:
        if not (sources[name] / str(args.version)).is_dir():
            raise ConfigError(f"--version: {sources[name] / str(args.version)} does not exist")
        labels[args.label] = args.version
    path = write_labels(sources[name], labels)
    if args.json:
        emit_json({"model_name": name, "labels": labels, "path": str(path)})
    else:
        log.info("labels of %s: %s (%s)", name, labels or "none", path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from beam_pipeline.api import write_report

    path = write_report(_load(args), args.output, run_id=args.run, model=args.model)
    if args.json:
        emit_json({"report": str(path)})
    else:
        log.info("report written to %s", path)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from beam_pipeline.ui import serve

    serve(
        _load(args),
        args.host,
        args.port,
        allow_review=args.allow_review,
        poll=args.poll,
        allowed_hosts=tuple(args.allowed_host),
    )
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from beam_pipeline.api import load
    from beam_pipeline.monitoring import cli as monitor_cli

    config = _load(args)
    extra = _beam_args(args)

    def run_pipeline(overrides: list[str]) -> Any:
        pipeline = load(args.config, [*args.overrides, *overrides])
        try:
            return pipeline.orchestrator(beam_args=extra).run()
        finally:
            pipeline.store.close()

    return monitor_cli.main(config, args, extra, run_pipeline)


def cmd_doctor(args: argparse.Namespace) -> int:
    from beam_pipeline.jobs.doctor import examine

    config = _load(args)
    if "://" in config.pipeline.root:  # an object-store root: endpoint and credentials from
        from beam_pipeline.io import filesystem
        from beam_pipeline.runners.options import beam_args  # Beam's options, as for `run`

        filesystem.configure(beam_args(config, list(args.beam_option)), [config.pipeline.root])
    findings = examine(config, dry_run=args.dry_run)
    if args.json:
        emit_json({"findings": findings, "dry_run": args.dry_run})
    elif not findings:
        print("nothing to repair")
    else:
        verb = "would be" if args.dry_run else "was"
        for f in findings:
            print(f"{f['kind']}: {f['what']} ({verb}: {f['repair']})")
    return 0


def absolute(path: str) -> str:
    """A local path (or glob) made absolute; a URL (gs://, s3://) as it is."""
    return path if "://" in path else os.path.abspath(path)


def cmd_init(args: argparse.Namespace) -> int:
    from beam_pipeline.scaffold import init

    written = init(
        args.name, args.data, args.label, args.dir, args.task, args.format, force=args.force
    )
    if args.json:
        emit_json(written.to_json())
        return 0
    p = written.profile
    roles = {r: [c.name for c in p.of_role(r)] for r in ("numeric", "categorical", "dropped")}
    print(f"{p.rows:,} sample rows; label {p.label.name!r}: {p.task}")
    for role, names in roles.items():
        if names:
            print(f"  {role}: {', '.join(names)}")
    for path in (written.config, written.transform, written.model):
        print(f"wrote {os.path.relpath(path)}")
    print(f"next: beam-pipeline run {os.path.relpath(written.config)}")
    return 0


def cmd_tune_worker(args: argparse.Namespace) -> int:
    from beam_pipeline.stages.tune import run_worker

    run_worker(args.config, args.overrides)
    return 0


def cmd_train_worker(args: argparse.Namespace) -> int:
    from beam_pipeline.stages.train import run_worker

    run_worker(args.config, args.overrides)
    return 0


def emit_json(value: dict[str, Any]) -> None:
    """One JSON object on stdout (see `beam_pipeline.core.jsonout`)."""
    from beam_pipeline.core.jsonout import dumps

    print(dumps(value))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "runs": cmd_runs,
    "lineage": cmd_lineage,
    "schema": cmd_schema,
    "models": cmd_models,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "rollback": cmd_rollback,
    "score": cmd_score,
    "serve": cmd_serve,
    "feedback": cmd_feedback,
    "label": cmd_label,
    "report": cmd_report,
    "ui": cmd_ui,
    "monitor": cmd_monitor,
    "doctor": cmd_doctor,
    "init": cmd_init,
    "tune-worker": cmd_tune_worker,
    "train-worker": cmd_train_worker,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (the console script exits through `_exit`).

    The one error edge: any exception becomes one ``error:`` line on stderr and an exit code
    (`PipelineError`: its own; anything else: 1), with the traceback under ``-v``; under
    ``--json`` a JSON object with ``error`` is printed on stdout as well.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _complete_help(_parser()).parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are exit 2, --help is 0
        return int(exc.code or 0)
    args.argv = argv
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `runs --json | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:
        if args.verbose:
            log.exception("error")
        code = exc.exit_code if isinstance(exc, PipelineError) else 1
        message = describe(exc)
        print(f"error: {message}", file=sys.stderr)  # the one line a user must see
        if getattr(args, "json", False):
            with contextlib.suppress(BrokenPipeError):
                print(json.dumps({"error": message, "exit_code": code}))
        return code


def describe(exc: BaseException) -> str:
    """One line for any exception: ours as they are; a refused file with its path and reason
    ("cannot write /x/y: No space left on device"); anything else with its type."""
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def entry() -> None:
    """Console script: flush, then leave without running interpreter teardown (see module doc)."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    entry()
