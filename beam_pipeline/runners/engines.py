"""The engines' own software, fetched once into a cache: Spark, Flink and Beam's job-server jars.

Nothing here downloads at pipeline run time. ``fetch`` (run by ``scripts/cluster ENGINE fetch``
or ``up``) brings what an engine needs through the registries' own clients and unpacks it under
the cache folder; ``find_job_server`` only looks in that folder.

Layout of the cache (``--cache DIR``, else ``$BEAM_PIPELINE_ENGINE_CACHE``, else
``<repo>/.cache/engines``)::

    downloads/                      the packages as pip downloaded them
    spark-3.5.9/{jars,bin,sbin}     Spark from the pyspark sdist (its deps/ folder)
    flink-1.20.5/{lib,opt,plugins}  Flink from the apache-flink-libraries sdist (its deps/ folder)
    jobservers/                     Beam's job-server jars (beam-runners-*-job-server-VERSION.jar)
    run/{spark,flink}/              a running cluster's processes: pids, logs, work folders

Spark and Flink come from PyPI as source archives that carry the engines' jars; they are unpacked,
not installed: the ``apache-flink`` Python API pins an older Apache Beam than ours, and neither
engine's Python API is needed to run a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.io import filesystem

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = "BEAM_PIPELINE_ENGINE_CACHE"
BEAM_VERSION = "2.72.0"  # Beam's job servers must match the SDK's version (constraints.txt)


@dataclass(frozen=True)
class Engine:
    """One engine's distribution: the PyPI package that carries its jars, and Beam's job server."""

    name: str
    package: str
    version: str
    job_server: str  # Maven group:artifact of Beam's job server for this engine version
    runner: str  # the Beam runner name that uses it
    jar_flag: str  # the Beam option that takes the job-server jar

    def home(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version}"

    def job_server_jar(self, cache: Path) -> Path:
        artifact = self.job_server.split(":")[1]
        return cache / "jobservers" / f"{artifact}-{BEAM_VERSION}.jar"


# Spark 3.5 with Scala 2.12 is what Beam's Spark 3 runner is built for; Flink 1.20 is the newest
# Flink 1.x that Beam 2.72 publishes a runner for (PUBLISHED_FLINK_VERSIONS 1.17 to 1.20).
SPARK = Engine(
    name="spark",
    package="pyspark",
    version="3.5.9",
    job_server="org.apache.beam:beam-runners-spark-3-job-server",
    runner="SparkRunner",
    jar_flag="--spark_job_server_jar",
)
FLINK = Engine(
    name="flink",
    package="apache-flink-libraries",
    version="1.20.5",
    job_server="org.apache.beam:beam-runners-flink-1.20-job-server",
    runner="FlinkRunner",
    jar_flag="--flink_job_server_jar",
)
ENGINES = {e.name: e for e in (SPARK, FLINK)}
BY_RUNNER = {e.runner: e for e in (SPARK, FLINK)}


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The cache folder: the one named, else $BEAM_PIPELINE_ENGINE_CACHE, else the repo's."""
    chosen = explicit or os.environ.get(CACHE_ENV) or REPO / ".cache" / "engines"
    return Path(chosen).expanduser().resolve()


def fetched(engine: Engine, cache: Path) -> bool:
    return (engine.home(cache) / ".complete").is_file()


def fetch(engine: Engine, cache: Path, log=print) -> Path:  # noqa: ANN001 (a print-like callable)
    """Download (pip) and unpack the engine into the cache once; returns its home folder."""
    home = engine.home(cache)
    if fetched(engine, cache):
        return home
    downloads = cache / "downloads"
    filesystem.makedirs(downloads)
    archive = _download(engine, downloads, log)
    log(f"{engine.name}: unpacking {archive.name} into {home}")
    partial = home.with_name(home.name + ".partial")
    filesystem.rmtree(partial)
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 2 and parts[1] == "deps":  # <pkg>-<version>/deps/<what the engine has>
                member.name = str(Path(*parts[2:]))
                members.append(member)
        if not members:
            raise ConfigError(f"{archive}: expected the engine's files under deps/; found none")
        tar.extractall(partial, members=members, filter="data")
    filesystem.rmtree(home)
    filesystem.move(partial, home)
    filesystem.write_text(home / ".complete", f"{engine.package}=={engine.version}\n")
    filesystem.remove(
        archive
    )  # the unpacked folder is what runs; the archive would double the cache
    return home


def _download(engine: Engine, downloads: Path, log) -> Path:  # noqa: ANN001
    spec = f"{engine.package}=={engine.version}"
    found = _archive(engine, downloads)
    if found is not None:
        return found
    log(f"{engine.name}: downloading {spec} from PyPI (pip download)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(downloads), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = _archive(engine, downloads)
    if done.returncode != 0 or found is None:
        why = f"exit {done.returncode}: {done.stderr[-2000:]}"
        raise ConfigError(f"pip download {spec} failed ({why})")
    return found


def _archive(engine: Engine, downloads: Path) -> Path | None:
    stem = engine.package.replace("-", "_")
    for pattern in (f"{engine.package}-{engine.version}.tar.gz", f"{stem}-{engine.version}.tar.gz"):
        if (downloads / pattern).is_file():
            return downloads / pattern
    return None


def fetch_job_server(engine: Engine, cache: Path, log=print) -> Path | None:  # noqa: ANN001
    """Beam's job-server jar for the engine through Maven (``dependency:copy``), once.

    Returns the jar, or None when Maven cannot resolve it (it is then not served to this machine).
    """
    jar = engine.job_server_jar(cache)
    if jar.is_file():
        return jar
    if shutil.which("mvn") is None:
        log(f"{engine.name}: mvn not found; cannot fetch {engine.job_server}:{BEAM_VERSION}")
        return None
    filesystem.makedirs(jar.parent)
    coords = f"{engine.job_server}:{BEAM_VERSION}"
    log(f"{engine.name}: resolving {coords} with Maven")
    cmd = ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={coords}"]
    cmd += [f"-DoutputDirectory={jar.parent}", "-Dmdep.useBaseVersion=true"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cache)
    if done.returncode != 0 or not jar.is_file():
        missing = "was not found" in done.stdout + done.stderr
        why = "not served by the Maven repository" if missing else f"mvn exit {done.returncode}"
        log(f"{engine.name}: {coords}: {why}")
        return None
    return jar


def find_job_server(runner: str, cache: Path | None = None) -> Path:
    """The job-server jar for a Beam runner from the cache; a ConfigError naming what to do."""
    engine = BY_RUNNER[runner]
    where = cache or cache_dir()
    jar = engine.job_server_jar(where)
    if jar.is_file():
        return jar
    raise ConfigError(
        f"--runner {runner}: Beam's job server {jar.name} is not in {jar.parent} (this project "
        f"never lets Beam download it at run time). Fetch it once with `scripts/cluster "
        f"{engine.name} fetch` where Maven serves {engine.job_server}:{BEAM_VERSION}, or pass "
        f"--beam-option={engine.jar_flag}=PATH, or --beam-option=--job_endpoint=HOST:PORT for a "
        f"job server you run yourself"
    )
