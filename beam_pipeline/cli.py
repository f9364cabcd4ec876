"""The `beam-pipeline` command line.

Exit codes: 0 the run finished; 1 a stage failed; 2 the command or config is wrong; 3 the
validation gate stopped the run. The process leaves through `os._exit` after flushing, because
TensorFlow/tf.Transform can crash during interpreter shutdown after a successful run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from beam_pipeline.errors import ConfigError, PipelineError

log = logging.getLogger("beam_pipeline")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beam-pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("config", help="pipeline config (YAML)")
        sp.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
        sp.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)
        return sp

    run = add("run", "run the pipeline (cached stages are reused)")
    run.add_argument("--from", dest="from_", metavar="STAGE", help="start at this stage")
    run.add_argument("--to", metavar="STAGE", help="stop after this stage")
    run.add_argument("--only", metavar="STAGE", help="run this stage alone")
    run.add_argument("--no-cache", action="store_true", help="rerun every selected stage")
    run.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    run.add_argument("--runner", help="Beam runner (overrides beam.runner)")
    run.add_argument("--beam-option", action="append", default=[], metavar="FLAG",
                     help="a Beam pipeline option, e.g. --beam-option=--project=p (repeatable)")

    runs = add("runs", "list the runs of this pipeline")
    runs.add_argument("--json", action="store_true")

    lineage = add("lineage", "print what produced an artifact, recursively")
    lineage.add_argument("--artifact", type=int, required=True, metavar="ID")
    lineage.add_argument("--json", action="store_true")

    schema = add("schema", "export the latest schema for curation")
    schema.add_argument("--export", required=True, metavar="PATH")
    return p


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(message)s" if verbose else "%(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("beam_pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_drop_import_noise)
        for noisy in ("apache_beam", "absl", "tensorflow", "tfx_bsl", "h5py", "keras_tuner"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        import warnings

        warnings.filterwarnings("ignore")


# Import-time notices of the stack that say nothing about the user's run.
_NOISE = ("crcmod package not found", "Unable to import IPython", "TFDV visualization APIs")


def _drop_import_noise(record: logging.LogRecord) -> bool:
    return not any(n in str(record.msg) for n in _NOISE)


def _load(args: argparse.Namespace) -> Any:
    from beam_pipeline.config import load

    return load(args.config, args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from beam_pipeline.orchestrator import Orchestrator
    from beam_pipeline.stages import STAGES

    config = _load(args)
    extra = list(args.beam_option)
    if args.runner:
        extra.insert(0, f"--runner={args.runner}")
    resume = ["beam-pipeline", "run", args.config] + [f"--set={o}" for o in args.overrides]
    orch = Orchestrator(config, STAGES, beam_args=extra, use_cache=not args.no_cache,
                        command=shlex.join(resume))
    try:
        result = orch.run(args.from_, args.to, args.only)
    finally:
        orch.store.close()
    if args.json:
        print(json.dumps(result.to_json()))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    else:
        log.info("run %s %s; artifacts under %s", result.run_id, result.status, config.root)
    return result.exit_code


def cmd_runs(args: argparse.Namespace) -> int:
    from beam_pipeline.metadata import Store

    store = Store(_load(args))
    runs = store.runs()
    if args.json:
        print(json.dumps(runs, default=str))
        return 0
    import datetime as dt

    print(f"{'run':28} {'status':10} {'started':19} {'seconds':>8}  stages")
    for r in runs:
        started = dt.datetime.fromtimestamp(r.get("started", 0)).strftime("%Y-%m-%d %H:%M:%S")
        stages = (r.get("summary") or {}).get("stages", {})
        brief = " ".join(f"{k}:{v.get('status', '?')[:4]}" for k, v in stages.items())
        print(f"{r['run_id']:28} {r.get('status', '?'):10} {started:19} "
              f"{r.get('seconds', 0):8.1f}  {brief}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from beam_pipeline.metadata import Store

    store = Store(_load(args))
    try:
        tree = store.lineage(args.artifact)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"--artifact: no artifact with id {args.artifact}") from exc
    if args.json:
        print(json.dumps(tree, default=str, indent=2))
    else:
        _print_tree(tree, 0)
    return 0


def _print_tree(node: dict[str, Any], depth: int) -> None:
    pad = "  " * depth
    a = node["artifact"]
    extra = {k: v for k, v in a.items() if k not in ("id", "type", "uri", "state")}
    print(f"{pad}{a['type']} #{a['id']} {a['uri']}")
    for k in ("fingerprint", "data_fingerprint", "span", "row_counts", "source", "passed"):
        if extra.get(k) not in (None, ""):
            print(f"{pad}  {k}: {extra[k]}")
    prod = node.get("produced_by")
    if prod:
        print(f"{pad}  ← {prod['stage']} (execution {prod['execution']}, run {prod['run_id']}, "
              f"{prod['state']}, key {prod['cache_key']}"
              + (f", module {prod['module_hash']}" if prod.get("module_hash") else "") + ")")
        for key, child in prod["inputs"].items():
            print(f"{pad}    {key}:")
            _print_tree(child, depth + 3)


def cmd_schema(args: argparse.Namespace) -> int:
    from beam_pipeline.metadata import Store
    from beam_pipeline.stages.schema import export_latest

    store = Store(_load(args))
    dest = export_latest(store, args.export)
    log.info("schema written to %s: edit it, then name it in schema.path", dest)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "runs": cmd_runs,
    "lineage": cmd_lineage,
    "schema": cmd_schema,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (the console script exits through `_exit`)."""
    if "-v" not in (argv or sys.argv) and "--verbose" not in (argv or sys.argv):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are exit 2, --help is 0
        return int(exc.code or 0)
    _setup_logging(args.verbose)
    try:
        code = COMMANDS[args.command](args)
    except PipelineError as exc:
        if args.verbose:
            log.exception("error")
        print(f"error: {exc}", file=sys.stderr)  # the one line a user must see, logs or not
        code = exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = 130
    return code


def entry() -> None:
    """Console script: flush, then leave without running interpreter teardown (see module doc)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    entry()
