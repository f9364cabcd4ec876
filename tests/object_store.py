"""A real S3 API server (moto's) on 127.0.0.1 for the object-store tests, and its client settings.

Beam reaches it through its S3 options (`beam_options`), boto3 and tensorflow-io through the
environment (`env`): the same split a cluster has, where nothing about endpoints or credentials is
in the pipeline's YAML.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PENGUINS_CSV = REPO / "data" / "penguins" / "penguins_processed.csv"

BOOT = REPO / "scripts" / "beam-worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def beam_options(self) -> list[str]:
        return [
            f"--s3_endpoint_url={self.endpoint}",
            "--s3_access_key_id=testing",
            "--s3_secret_access_key=testing",
            "--s3_region_name=us-east-1",
        ]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3(folder: Path) -> S3Server:
    port = free_port()
    log = folder / "moto.log"
    moto = Path(sys.executable).parent / "moto_server"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    server = S3Server(port, proc, log)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(server.endpoint, timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                server.stop()
                raise RuntimeError(
                    f"moto_server did not start: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)
    server.env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "S3_ENDPOINT": server.endpoint,
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
        "AWS_ENDPOINT_URL": server.endpoint,
    }
    return server


def child_env(server: S3Server) -> dict[str, str]:
    return {
        **os.environ,
        **server.env,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


@dataclass
class PortableCluster:
    """A Beam job server and an external worker pool, each its own process in its own folder: the
    processes a Flink or Spark cluster runs, minus the engine."""

    job_port: int
    pool_port: int
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def beam_options(self) -> list[str]:
        return [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{self.pool_port}",
        ]

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tail(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in self.logs if p.exists())


def start_portable(folder: Path, env: dict[str, str]) -> PortableCluster:
    """Start the job server and the worker pool (it starts one SDK worker process per worker the
    job asks for) in folders other than the launcher's; wait until both listen."""
    python = sys.executable
    # The pool starts SDK workers with the `python` on PATH: this venv's, or they die silently.
    env = {**env, "PATH": f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"}
    cluster = PortableCluster(free_port(), free_port(), [], [])
    commands = {
        "job-server": [
            python,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={cluster.job_port}",
        ],
        "worker-pool": [
            python,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={cluster.pool_port}",
            # Each worker boots as in Beam's SDK container: it fetches the job's options first.
            f"--container_executable={BOOT}",
        ],
    }
    for name, command in commands.items():
        cwd = folder / name
        cwd.mkdir(parents=True, exist_ok=True)
        log = cwd / "log.txt"
        cluster.logs.append(log)
        with open(log, "wb") as out:
            cluster.processes.append(
                subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    deadline = time.time() + 60
    for port in (cluster.job_port, cluster.pool_port):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or any(p.poll() is not None for p in cluster.processes):
                    cluster.stop()
                    raise RuntimeError(
                        f"portable cluster did not start:\n{cluster.tail()}"
                    ) from None
                time.sleep(0.3)
    return cluster


def cli(server: S3Server, *args: str, timeout: float = 1500) -> tuple[int, Any, str]:
    """``beam-pipeline ARGS`` in a child process with the S3 settings in its environment."""
    from tests.pipeline_fixtures import cli as run_cli

    return run_cli(*args, timeout=timeout, env=server.env)


def penguins_config(base: Path) -> dict[str, Any]:
    """The penguins config on a small budget (no tuning, 3 epochs), root and serving folder under
    ``base``, a local SQLite store."""
    cfg = yaml.safe_load((REPO / "configs" / "penguins.yaml").read_text())
    cfg["pipeline"]["root"] = str(base / "runs" / "penguins")
    cfg["metadata"] = {"backend": "sqlite", "path": str(base / "metadata.sqlite")}
    cfg["ingest"]["source"] = str(PENGUINS_CSV)
    cfg["schema"]["path"] = str(REPO / "configs" / "penguins" / "schema.pbtxt")
    cfg["transform"]["module"] = str(REPO / "transforms" / "penguins.py")
    cfg["train"]["module"] = str(REPO / "models" / "penguins.py")
    cfg["tune"]["enabled"] = False
    cfg["train"].update(epochs=3, early_stopping_patience=0)
    cfg["evaluate"]["thresholds"] = {"accuracy": {"lower": 0.6}}
    cfg["push"]["serving_dir"] = str(base / "serving")
    return cfg


def penguins_on_s3(server: S3Server, base: Path, bucket: str) -> Path:
    """The penguins config with data, root and serving folder on S3 (store: a local SQLite)."""
    server.bucket(bucket)
    server.client().upload_file(str(PENGUINS_CSV), bucket, "data/penguins.csv")
    cfg = penguins_config(base)
    cfg["pipeline"]["root"] = f"s3://{bucket}/runs/penguins"
    cfg["ingest"]["source"] = f"s3://{bucket}/data/penguins.csv"
    cfg["push"]["serving_dir"] = f"s3://{bucket}/serving"
    path = base / "penguins.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
