"""A Spark standalone cluster or a Flink session cluster on 127.0.0.1, as separate processes.

    scripts/cluster {spark|flink} {fetch|up|down|status|smoke} [--workers N] [--cache DIR] ...

``up`` fetches what is missing (``engines.fetch``), starts the engine's master and workers, each
in its own working folder under ``{cache}/run/{engine}/`` (or ``--run-dir``), waits until the
engine's REST API reports every worker, and prints two lines for scripts::

    master=spark://127.0.0.1:7177            (what --spark_master_url / --flink_master take)
    rest=http://127.0.0.1:8180/json/         (the engine's own JSON API)

``down`` stops every process it started, by the pid it recorded (and that process's group: a
Spark worker's executors), and waits until none is listening. ``smoke`` runs a small job of the
engine itself (the JVM sources under ``scripts/engine_jobs/``, compiled once with the JDK) and
waits until the REST API lists it as finished.

Default ports stay clear of ``serve`` (8500, 8501) and ``ui`` (8080): Spark's master 7177 and its
web UI 8180 (workers 8181, 8182, ...); Flink's REST API 8281 and its JobManager RPC 6223.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from beam_pipeline.core.liveness import pid_exists
from beam_pipeline.io import filesystem
from beam_pipeline.runners import engines
from beam_pipeline.runners.engines import FLINK, SPARK, Engine

HOST = "127.0.0.1"
JOBS_SRC = engines.REPO / "scripts" / "engine_jobs"
DEFAULTS = {"spark": {"port": 7177, "rest_port": 8180}, "flink": {"port": 6223, "rest_port": 8281}}

# What Spark's own launcher adds on Java 17 (org.apache.spark.launcher.JavaModuleOptions).
SPARK_JAVA_OPTS = [
    "-XX:+IgnoreUnrecognizedVMOptions",
    *(
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in (
            "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net",
            "java.nio", "java.util", "java.util.concurrent", "java.util.concurrent.atomic",
            "jdk.internal.ref", "sun.nio.ch", "sun.nio.cs", "sun.security.action",
            "sun.util.calendar",
        )
    ),
    "--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "-Djdk.reflect.useDirectMethodHandle=false",
]  # fmt: skip
# What Flink 1.20's default configuration gives every JVM (env.java.opts.all) on Java 17.
FLINK_JAVA_OPTS = [
    *(
        f"--add-exports={p}=ALL-UNNAMED"
        for p in (
            "java.base/sun.net.util", "java.rmi/sun.rmi.registry",
            "jdk.compiler/com.sun.tools.javac.api", "jdk.compiler/com.sun.tools.javac.file",
            "jdk.compiler/com.sun.tools.javac.parser", "jdk.compiler/com.sun.tools.javac.tree",
            "jdk.compiler/com.sun.tools.javac.util", "java.security.jgss/sun.security.krb5",
        )
    ),
    *(
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in (
            "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect",
            "java.text", "java.time", "java.util", "java.util.concurrent",
            "java.util.concurrent.atomic", "java.util.concurrent.locks",
        )
    ),
]  # fmt: skip
FLINK_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


class ClusterError(RuntimeError):
    """The cluster did not start, answer or stop; the message names the process and its log."""


@dataclass
class Proc:
    name: str
    pid: int
    cwd: str
    log: str


@dataclass
class ClusterState:
    engine: str
    master: str
    rest: str
    workers: int
    ports: list[int]
    procs: list[Proc] = field(default_factory=list)

    def save(self, run_dir: Path) -> None:
        filesystem.write_text(run_dir / "cluster.json", json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> ClusterState | None:
        path = run_dir / "cluster.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        raw["procs"] = [Proc(**p) for p in raw["procs"]]
        return cls(**raw)


def run_dir_for(engine: Engine, cache: Path, explicit: str | None = None) -> Path:
    return Path(explicit).resolve() if explicit else cache / "run" / engine.name


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our loopback URL)
        return json.loads(response.read())


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def alive(pid: int) -> bool:
    if not pid_exists(pid):
        return False
    # A zombie (our own exited child not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _start(name: str, cmd: list[str], run_dir: Path, env: dict[str, str]) -> Proc:
    cwd = run_dir / name
    log = cwd / f"{name}.out"
    with filesystem.open_append(log) as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return Proc(name=name, pid=proc.pid, cwd=str(cwd), log=str(log))


def _wait(what: str, ready: Callable[[], bool], procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not alive(p.pid):
                raise ClusterError(f"{p.name} exited during start-up; see {p.log}:\n{_tail(p.log)}")
        try:
            if ready():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.log}\n{_tail(p.log)}" for p in procs)
    raise ClusterError(f"{what} not ready within {timeout:.0f}s\n{logs}")


def _tail(path: str, n: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---- Spark ----------------------------------------------------------------------------------


def spark_env(home: Path, run_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": HOST,  # every Spark server (web UIs too) binds to loopback only
        "SPARK_LOCAL_HOSTNAME": HOST,
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_LOG_DIR": str(run_dir / "logs"),
        "SPARK_CONF_DIR": str(run_dir / "conf"),
    }


def spark_up(home: Path, run_dir: Path, workers: int, port: int, rest_port: int) -> ClusterState:
    filesystem.makedirs(run_dir / "conf")
    env = spark_env(home, run_dir)
    spark_class = str(home / "bin" / "spark-class")
    master_url = f"spark://{HOST}:{port}"
    rest = f"http://{HOST}:{rest_port}/json/"
    state = ClusterState("spark", master_url, rest, workers, [port, rest_port])
    master = _start(
        "master",
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST, "--port",
         str(port), "--webui-port", str(rest_port)],
        run_dir, env,
    )  # fmt: skip
    state.procs.append(master)
    state.save(run_dir)
    _wait("Spark master", lambda: get_json(rest).get("status") == "ALIVE", [master], 90)
    for i in range(1, workers + 1):
        ui = rest_port + i
        state.ports.append(ui)
        work = run_dir / f"worker-{i}" / "work"
        filesystem.makedirs(work)
        state.procs.append(
            _start(
                f"worker-{i}",
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                 "--cores", "1", "--memory", "1g", "--webui-port", str(ui),
                 "--work-dir", str(work), master_url],
                run_dir, env,
            )
        )  # fmt: skip
        state.save(run_dir)

    def all_alive() -> bool:
        listed = get_json(rest).get("workers", [])
        return sum(w.get("state") == "ALIVE" for w in listed) >= workers

    _wait(f"{workers} Spark worker(s)", all_alive, state.procs, 120)
    return state


def spark_smoke(home: Path, state: ClusterState, run_dir: Path, name: str, cache: Path) -> dict:
    """SparkSmoke (sum of squares over 4 partitions) on the cluster; its finished application."""
    jar = smoke_jar(SPARK, home, cache)
    cmd = [
        str(home / "bin" / "spark-submit"), "--master", state.master, "--class", "SparkSmoke",
        "--name", name, "--conf", f"spark.driver.host={HOST}",
        "--conf", "spark.executor.memory=512m", "--conf", "spark.driver.memory=512m",
        str(jar), name,
    ]  # fmt: skip
    done = subprocess.run(
        cmd, env=spark_env(home, run_dir), capture_output=True, text=True, timeout=300,
        cwd=run_dir,
    )  # fmt: skip
    if done.returncode != 0 or "sum_of_squares=333833500" not in done.stdout:
        raise ClusterError(f"spark-submit failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return _finished_spark_app(state, name)


def _finished_spark_app(state: ClusterState, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for app in get_json(state.rest).get("completedapps", []):
            if app.get("name") == name and app.get("state") == "FINISHED":
                return app
        time.sleep(0.5)
    raise ClusterError(f"application {name!r} is not FINISHED in {state.rest}")


# ---- Flink ----------------------------------------------------------------------------------


def flink_conf(run_dir: Path, workers: int, port: int, rest_port: int) -> Path:
    conf = run_dir / "conf"
    settings = {
        "jobmanager.rpc.address": HOST,
        "jobmanager.rpc.port": port,
        "jobmanager.bind-host": HOST,
        "jobmanager.memory.process.size": "800m",
        "rest.address": HOST,
        "rest.bind-address": HOST,
        "rest.port": rest_port,
        "taskmanager.host": HOST,
        "taskmanager.bind-host": HOST,
        "taskmanager.numberOfTaskSlots": 1,
        "taskmanager.memory.process.size": "1200m",
        "taskmanager.memory.managed.size": "64m",
        "parallelism.default": workers,
        "blob.server.port": 0,
        "taskmanager.rpc.port": 0,
        "env.java.opts.all": " ".join(FLINK_JAVA_OPTS),
    }
    text = "".join(f"{k}: {v}\n" for k, v in settings.items())
    filesystem.write_text(conf / "flink-conf.yaml", text)
    filesystem.write_text(conf / "log4j.properties", FLINK_LOG4J)
    filesystem.write_text(conf / "log4j-cli.properties", FLINK_LOG4J)
    return conf


def _flink_java(home: Path, conf: Path, log: Path, heap_params: list[str]) -> list[str]:
    return [
        "java", *FLINK_JAVA_OPTS, *heap_params, f"-Dlog.file={log}",
        f"-Dlog4j.configurationFile=file:{conf}/log4j.properties",
        "-cp", f"{home}/lib/*",
    ]  # fmt: skip


def _flink_resources(home: Path, conf: Path, which: str) -> tuple[list[str], list[str]]:
    """JVM flags and -D settings as Flink's start scripts compute them (BashJavaUtils)."""
    cmd = [
        "java", "-cp", f"{home}/bin/bash-java-utils.jar:{home}/lib/*",
        "org.apache.flink.runtime.util.bash.BashJavaUtils", which, "--configDir", str(conf),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    results = [
        line.split("BASH_JAVA_UTILS_EXEC_RESULT:", 1)[1]
        for line in done.stdout.splitlines()
        if "BASH_JAVA_UTILS_EXEC_RESULT:" in line
    ]
    if done.returncode != 0 or len(results) < 2:
        raise ClusterError(f"Flink's BashJavaUtils {which} failed: {done.stdout[-2000:]}")
    return results[-2].split(), results[-1].split()


def flink_up(home: Path, run_dir: Path, workers: int, port: int, rest_port: int) -> ClusterState:
    conf = flink_conf(run_dir, workers, port, rest_port)
    env = {**os.environ, "FLINK_CONF_DIR": str(conf), "FLINK_HOME": str(home)}
    rest = f"http://{HOST}:{rest_port}/overview"
    state = ClusterState("flink", f"{HOST}:{rest_port}", rest, workers, [port, rest_port])
    jvm, dyn = _flink_resources(home, conf, "GET_JM_RESOURCE_PARAMS")
    cwd = run_dir / "jobmanager"
    jm = _start(
        "jobmanager",
        [*_flink_java(home, conf, cwd / "jobmanager.log", jvm),
         "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
         "--configDir", str(conf), *dyn, "-D", f"io.tmp.dirs={cwd / 'tmp'}"],
        run_dir, env,
    )  # fmt: skip
    filesystem.makedirs(cwd / "tmp")
    state.procs.append(jm)
    state.save(run_dir)
    _wait("Flink JobManager", lambda: "taskmanagers" in get_json(rest), [jm], 90)
    jvm, dyn = _flink_resources(home, conf, "GET_TM_RESOURCE_PARAMS")
    for i in range(1, workers + 1):
        name = f"taskmanager-{i}"
        cwd = run_dir / name
        filesystem.makedirs(cwd / "tmp")
        state.procs.append(
            _start(
                name,
                [*_flink_java(home, conf, cwd / f"{name}.log", jvm),
                 "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                 "--configDir", str(conf), *dyn, "-D", f"io.tmp.dirs={cwd / 'tmp'}",
                 "-D", f"taskmanager.resource-id={name}"],
                run_dir, env,
            )
        )  # fmt: skip
        state.save(run_dir)
    _wait(
        f"{workers} Flink TaskManager(s)",
        lambda: get_json(rest).get("taskmanagers", 0) >= workers,
        state.procs,
        120,
    )
    return state


def flink_smoke(home: Path, state: ClusterState, run_dir: Path, name: str, cache: Path) -> dict:
    """FlinkSmoke (a keyed sum in batch mode) on the cluster; its finished job."""
    jar = smoke_jar(FLINK, home, cache)
    conf = run_dir / "conf"
    log = run_dir / "client.log"
    cmd = [
        "java", *FLINK_JAVA_OPTS, f"-Dlog.file={log}",
        f"-Dlog4j.configurationFile=file:{conf}/log4j-cli.properties",
        "-cp", f"{home}/lib/*", "org.apache.flink.client.cli.CliFrontend",
        "run", "-m", state.master, "-c", "FlinkSmoke", str(jar), name,
    ]  # fmt: skip
    env = {**os.environ, "FLINK_CONF_DIR": str(conf), "FLINK_HOME": str(home)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=run_dir)
    if done.returncode != 0:
        raise ClusterError(
            f"flink run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{_tail(str(log))}"
        )
    base = state.rest.rsplit("/", 1)[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for job in get_json(f"{base}/jobs/overview").get("jobs", []):
            if job.get("name") == name and job.get("state") == "FINISHED":
                return job
        time.sleep(0.5)
    raise ClusterError(f"job {name!r} is not FINISHED in {base}/jobs/overview")


def smoke_jar(engine: Engine, home: Path, cache: Path) -> Path:
    """Compile scripts/engine_jobs/<Engine>Smoke.java against the engine's jars, once."""
    cls = f"{engine.name.capitalize()}Smoke"
    out = cache / "smoke" / f"{engine.name}-{engine.version}"
    jar = out / f"{cls}.jar"
    if jar.is_file():
        return jar
    filesystem.makedirs(out)
    libs = f"{home}/jars/*" if engine is SPARK else f"{home}/lib/*"
    source = str(JOBS_SRC / f"{cls}.java")
    for cmd in (
        ["javac", "-nowarn", "-cp", libs, "-d", str(out / "classes"), source],
        ["jar", "cf", str(jar), "-C", str(out / "classes"), "."],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(cmd[:2])} failed: {done.stderr[-2000:]}")
    return jar


# ---- the commands ---------------------------------------------------------------------------


def up(engine: Engine, cache: Path, run_dir: Path, workers: int, port: int, rest_port: int,
       log: Callable[[str], None] = print) -> ClusterState:  # fmt: skip
    old = ClusterState.load(run_dir)
    if old is not None and any(alive(p.pid) for p in old.procs):
        raise ClusterError(
            f"a {engine.name} cluster started from {run_dir} is still running "
            f"(pids {[p.pid for p in old.procs if alive(p.pid)]}); `scripts/cluster "
            f"{engine.name} down` first"
        )
    for p in (port, rest_port, *(rest_port + i for i in range(1, workers + 1))):
        if engine is SPARK or p in (port, rest_port):
            if listening(p):
                raise ClusterError(f"{HOST}:{p} is already in use; choose other ports")
    home = engines.fetch(engine, cache, log=log)
    filesystem.makedirs(run_dir)
    start = spark_up if engine is SPARK else flink_up
    try:
        return start(home, run_dir, workers, port, rest_port)
    except BaseException:
        state = ClusterState.load(run_dir)
        if state is not None:
            down_state(state, run_dir)
        raise


def down_state(state: ClusterState, run_dir: Path, timeout: float = 30) -> list[int]:
    """Stop every recorded process (its group: a Spark worker's executors too), latest first."""
    stopped = []
    for p in reversed(state.procs):
        if alive(p.pid):
            stopped.append(p.pid)
            _signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in stopped:
        if alive(pid):
            _signal_group(pid, signal.SIGKILL)
    for pid in stopped:  # reap them when they are our own children (tests, `up` failing)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    deadline = time.monotonic() + 15
    while any(listening(port) for port in state.ports) and time.monotonic() < deadline:
        time.sleep(0.3)
    filesystem.remove(run_dir / "cluster.json")
    return stopped


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: its group id is its pid
    except ProcessLookupError:
        pass


def status(state: ClusterState) -> dict:
    body = get_json(state.rest)
    if state.engine == "spark":
        return {
            "alive_workers": sum(w.get("state") == "ALIVE" for w in body.get("workers", [])),
            "completed_apps": len(body.get("completedapps", [])),
            "active_apps": len(body.get("activeapps", [])),
        }
    return {
        "taskmanagers": body.get("taskmanagers", 0),
        "jobs_finished": body.get("jobs-finished", 0),
        "jobs_running": body.get("jobs-running", 0),
    }


def finished_jobs(state: ClusterState) -> list[str]:
    """Names of the engine's finished applications (Spark) or jobs (Flink), oldest first."""
    if state.engine == "spark":
        apps = get_json(state.rest).get("completedapps", [])
        done = [a for a in apps if a.get("state") == "FINISHED"]
        return [a["name"] for a in sorted(done, key=lambda a: a.get("starttime", 0))]
    base = state.rest.rsplit("/", 1)[0]
    jobs = get_json(f"{base}/jobs/overview").get("jobs", [])
    done = [j for j in jobs if j.get("state") == "FINISHED"]
    return [j["name"] for j in sorted(done, key=lambda j: j.get("start-time", 0))]


def _lines(state: ClusterState) -> Iterator[str]:
    yield f"master={state.master}"
    yield f"rest={state.rest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=sorted(engines.ENGINES))
    parser.add_argument("command", choices=["fetch", "up", "down", "status", "smoke"])
    parser.add_argument("--workers", type=int, default=2, help="workers/TaskManagers (default 2)")
    parser.add_argument("--cache", help=f"default ${engines.CACHE_ENV}, else .cache/engines")
    parser.add_argument("--run-dir", help="the processes' folders (default CACHE/run/ENGINE)")
    parser.add_argument("--port", type=int, help="Spark master port / Flink JobManager RPC port")
    parser.add_argument("--rest-port", type=int, help="Spark master web UI / Flink REST port")
    parser.add_argument("--name", default="smoke", help="the smoke job's name")
    args = parser.parse_args(argv)
    engine = engines.ENGINES[args.engine]
    cache = engines.cache_dir(args.cache)
    run_dir = run_dir_for(engine, cache, args.run_dir)
    log = lambda msg: print(f"cluster: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.command == "fetch":
            home = engines.fetch(engine, cache, log=log)
            log(f"{engine.name} {engine.version} in {home}")
            jar = engines.fetch_job_server(engine, cache, log=log)
            log(f"job server: {jar or 'not available (see docs/runners.md)'}")
            return 0
        if args.command == "up":
            port = args.port or DEFAULTS[engine.name]["port"]
            rest_port = args.rest_port or DEFAULTS[engine.name]["rest_port"]
            state = up(engine, cache, run_dir, args.workers, port, rest_port, log=log)
            log(f"{engine.name} up: {len(state.procs)} processes, folders under {run_dir}")
            print("\n".join(_lines(state)), flush=True)
            return 0
        state = ClusterState.load(run_dir)
        if args.command == "down":
            if state is None:
                log(f"no {engine.name} cluster recorded in {run_dir}")
                return 0
            stopped = down_state(state, run_dir)
            log(f"{engine.name} down: stopped pids {stopped}")
            return 0
        if state is None or not any(alive(p.pid) for p in state.procs):
            log(f"no {engine.name} cluster running from {run_dir}")
            return 1
        if args.command == "status":
            print("\n".join(_lines(state)))
            for key, value in status(state).items():
                print(f"{key}={value}")
            return 0
        home = engine.home(cache)
        smoke = spark_smoke if engine is SPARK else flink_smoke
        result = smoke(home, state, run_dir, args.name, cache)
        print(f"finished={json.dumps(result, sort_keys=True)}")
        return 0
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
