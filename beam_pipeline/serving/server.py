"""``beam-pipeline serve``: one process, REST (uvicorn on httptools) and gRPC (`serving.h2grpc`,
or grpc.aio with ``serving.grpc_server: grpcio``) on one uvloop event loop (``serving.workers``
> 1: several such processes, see `serving.workers`).

Shutdown (SIGTERM or SIGINT): uvicorn stops accepting and finishes the requests it has, gRPC does
the same (a grace period), the batchers answer what is queued, and the log writer drains its queue
and closes its segments; then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.serving.section import ServingSection, check_model_name

log = logging.getLogger(__name__)


def serving_section(config: Any) -> ServingSection:
    return config.stages.get("serving") or ServingSection()


def model_sources(config: Any, extra: list[str]) -> dict[str, Path]:
    """Model name -> base folder: the pipeline's pushed model, ``serving.models``, ``--model``."""
    base_dir = Path(config.source_file).resolve().parent if config.source_file else Path.cwd()
    push = config.stages.get("push")
    serving_dir = Path(getattr(push, "serving_dir", None) or "serving")
    if not serving_dir.is_absolute():
        serving_dir = base_dir / serving_dir
    sources = {config.pipeline.name: serving_dir / config.pipeline.name}
    for name, folder in serving_section(config).models.items():
        p = Path(folder)
        sources[name] = p if p.is_absolute() else base_dir / p
    for item in extra:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise ConfigError(f"--model: expected NAME=DIR; received {item!r}")
        check_model_name(name, "--model")
        sources[name] = Path(folder).resolve()
    for name, folder in sources.items():
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"model {name!r}: {folder} is not a folder")
    return sources


class _Server:
    """uvicorn's Server, but signals only ask it to stop: the process exits after our cleanup
    (uvicorn would re-raise the signal once it stops, killing the process before the log drains)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {
                    s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)
                }
                try:
                    yield
                finally:
                    for s, handler in previous.items():
                        signal.signal(s, handler)

        return Server(config)


async def serve_async(
    config: Any,
    host: str,
    port: int,
    grpc_port: int,
    extra_models: list[str],
    shared: bool = False,
) -> None:
    """``shared``: one of several workers on the same ports (`serving.workers`)."""
    import uvicorn

    from beam_pipeline.serving.app import build_app
    from beam_pipeline.serving.metrics import Metrics
    from beam_pipeline.serving.models import ModelManager
    from beam_pipeline.serving.service import Service

    section = serving_section(config)
    sources = model_sources(config, extra_models)
    metrics = Metrics()

    def on_event(event: str, name: str, version: int) -> None:
        if event == "loaded":
            metrics.loaded.labels(name, str(version)).set(1)
        elif event == "load_failed":
            metrics.load_failures.labels(name).inc()
        elif event == "swap":
            metrics.swaps.labels(name).inc()

    manager = ModelManager(
        sources, section.version_labels, poll_seconds=section.poll_seconds, on_event=on_event
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, manager.start)
    for name, model in manager.models.items():
        if model.latest is None:
            log.warning(
                "serve: %s has no loadable version in %s yet; waiting for a push", name, model.base
            )
    service = Service(section, manager, str(config.root), metrics)
    service.start(loop)
    app = build_app(service)
    from beam_pipeline.serving.http1 import CoalescingHttpToolsProtocol

    grpc_server = None
    if grpc_port:
        from beam_pipeline.serving.grpc_service import start_grpc

        grpc_server = await start_grpc(service, host, grpc_port, shared)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=section.access_log,
            lifespan="off",
            timeout_graceful_shutdown=30,
            # httptools (h11 cost a fifth of a request's time on the event loop), a response's
            # writes sent as one (`http1`)
            http=CoalescingHttpToolsProtocol,
            proxy_headers=False,  # its middleware wrapped every request; serve reads no client
            # address (X-Forwarded-For is for access logs, which are off by default)
        )
    )
    log.info(
        "serve: REST on http://%s:%d%s; models %s",
        host,
        port,
        f", gRPC on {host}:{grpc_port}" if grpc_port else "",
        ", ".join(f"{n} ({p})" for n, p in sources.items()),
    )
    sockets = None
    ready = None
    if shared:
        from beam_pipeline.serving.workers import listen_socket, notify_ready

        sockets = [listen_socket(host, port)]
        ready = asyncio.create_task(_when_started(server, notify_ready))
    try:
        await server.serve(sockets=sockets)
    finally:
        if ready is not None:
            ready.cancel()
        if grpc_server is not None:
            await grpc_server.stop(grace=10)
        await service.close()
        log.info(
            "serve: stopped; %d log records written, %d dropped",
            service.writer.written,
            service.writer.dropped,
        )


async def _when_started(server: Any, callback: Any) -> None:
    """Call ``callback`` once uvicorn is serving (its ``started`` flag)."""
    while not server.started:
        await asyncio.sleep(0.05)
    callback()


def tensorflow_threads(threads: int) -> None:
    """TensorFlow's thread pools for this process (``serving.model_threads``; 0 leaves its
    default). Must run before TensorFlow's first op."""
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran an op in this process
        log.warning("serve: serving.model_threads not applied: TensorFlow is already running")


def serve(
    config: Any,
    host: str,
    port: int,
    grpc_port: int,
    extra_models: list[str],
    shared: bool = False,
) -> None:
    import uvloop

    if not shared:
        # prometheus_client reads this at import: a value left in the user's environment (for
        # another server's workers) would put this lone process's metrics in that folder and
        # sum that folder's files into its /metrics
        from beam_pipeline.serving.workers import MULTIPROCESS_ENV

        if os.environ.pop(MULTIPROCESS_ENV, None) and "prometheus_client" in sys.modules:
            log.warning("serve: %s was set before prometheus_client loaded", MULTIPROCESS_ENV)
    tensorflow_threads(serving_section(config).model_threads)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_async(config, host, port, grpc_port, extra_models, shared))
