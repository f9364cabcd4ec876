"""Scaling of the data stages (ingest, statistics) on the portable runner with external workers.

    ./scripts/bench scale [--rows N] [--workers 1,2] [--workdir DIR]

Runs the taxi config's ingest and statistics on N generated rows (default 1,000,000) in one CSV
file, read as ``--ranges`` byte ranges (``ingest.split_bytes``) so that several workers share it:

- baseline: DirectRunner in_memory (one process), in the same run;
- DirectRunner multi_processing with the largest worker count (worker processes on this machine);
- the portable runner as a cluster runs it: a job server and an external worker pool, each its
  own process (``scripts/beam-worker`` boots each worker with the job's options), with
  ``--direct_num_workers=W`` asking the job server for W workers.

Prints seconds and rows/s per stage and rows/s per worker. Figures from a 2-core machine cannot
show scaling: the job server, the workers and the launcher share two cores. See the README's
benchmark section for what a 16-core machine needs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

STAGES = ("ingest", "statistics")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(folder: Path) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """A job server and a worker pool in their own folders; their processes and Beam flags."""
    job, pool = free_port(), free_port()
    python = sys.executable
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = {
        "job-server": [
            python, "-m", "apache_beam.runners.portability.local_job_service_main",
            f"--port={job}",
        ],
        "worker-pool": [
            python, "-m", "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={pool}", f"--container_executable={REPO / 'scripts' / 'beam-worker'}",
        ],
    }  # fmt: skip
    procs = []
    for name, command in commands.items():
        cwd = folder / name
        cwd.mkdir(parents=True, exist_ok=True)
        with open(cwd / "log.txt", "wb") as out:
            procs.append(subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out))
    for port in (job, pool):
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    stop(procs)
                    raise SystemExit(
                        f"bench: the portable cluster did not start ({folder})"
                    ) from None
                time.sleep(0.3)
    flags = [
        "--runner=PortableRunner",
        f"--job_endpoint=localhost:{job}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool}",
    ]
    return procs, flags


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_stages(
    config: Path, beam: list[str], timeout: float, sets: tuple[str, ...] = ()
) -> dict[str, float]:
    """ingest then statistics through the CLI (a child process); seconds per stage."""
    args = [sys.executable, "-m", "beam_pipeline.cli", "run", str(config), "--to", "statistics"]
    args += ["--json", "--no-cache", *(f"--beam-option={b}" for b in beam)]
    args += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bench: run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    return {s: float(summary["stages"][s]["seconds"]) for s in STAGES}


def main(argv: list[str] | None = None) -> int:
    import yaml
    from bench import TAXI_CONFIG, data_file

    parser = argparse.ArgumentParser(description="data stages on the portable runner")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--ranges", type=int, default=8, help="byte ranges the one CSV file is read as"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    csv = data_file(workdir, args.rows)
    # One file: without byte ranges a single worker would read all of it (ingest.split_bytes).
    split_bytes = csv.stat().st_size // args.ranges + 1
    taxi = yaml.safe_load(TAXI_CONFIG.read_text())
    config = workdir / "scale.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "scale", "root": str(workdir / "root")},
                "metadata": {"backend": "sqlite", "path": str(workdir / "metadata.sqlite")},
                "ingest": {**taxi["ingest"], "source": str(csv), "split_bytes": split_bytes},
                "statistics": taxi.get("statistics", {}),
            }
        )
    )
    results = []
    say(f"baseline: DirectRunner in_memory, {args.rows:,} rows")
    seconds = run_stages(config, [], args.timeout)
    results.append(("DirectRunner in_memory", 1, seconds))
    counts = [int(w) for w in args.workers.split(",")]
    most = max(counts)
    say(f"DirectRunner multi_processing, {most} worker processes")
    modes = ("beam.direct_running_mode=multi_processing", f"beam.direct_num_workers={most}")
    seconds = run_stages(config, [], args.timeout, modes)
    results.append((f"DirectRunner multi_processing x{most}", most, seconds))
    for workers in counts:
        say(f"portable runner, {workers} external worker(s)")
        procs, flags = start_cluster(workdir / f"cluster-{workers}")
        try:
            seconds = run_stages(config, [*flags, f"--direct_num_workers={workers}"], args.timeout)
        finally:
            stop(procs)
        results.append((f"portable, {workers} external worker(s)", workers, seconds))
    print(
        f"data stages on {args.rows:,} rows, one {csv.stat().st_size / 1e6:.0f} MB CSV file read "
        f"as {args.ranges} byte ranges ({os.cpu_count()} cores)"
    )
    print(f"{'runner':34} {'stage':10} {'seconds':>8} {'rows/s':>10} {'rows/s/worker':>14}")
    base = results[0][2]
    for name, workers, seconds in results:
        for stage in STAGES:
            rate = args.rows / seconds[stage]
            print(
                f"{name:34} {stage:10} {seconds[stage]:8.1f} {rate:10,.0f} {rate / workers:14,.0f}"
            )
        total = sum(seconds.values())
        print(f"{name:34} {'both':10} {total:8.1f}   (x{sum(base.values()) / total:.2f} baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
