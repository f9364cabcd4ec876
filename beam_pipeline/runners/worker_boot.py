"""Start one Beam SDK worker the way Beam's SDK container boots it, for an external worker pool.

Beam's ``worker_pool_main`` on its own starts workers as a bare ``SdkHarness``: they never receive
the job's pipeline options, so Beam's own S3/GCS filesystems in them have no endpoint or
credentials and ``--beam_plugins`` are never imported. A cluster's worker pool (the SDK container
run with ``--worker_pool``) instead hands each worker to the container's ``boot`` program, which
asks the runner's provision service for the job's options and then runs ``sdk_worker_main``.
This module is that boot step in Python, so the same pool works from a plain virtualenv:

    python -m apache_beam.runners.worker.worker_pool_main --service_port=50000 \\
        --container_executable=scripts/beam-worker

``scripts/beam-worker`` runs ``python -m beam_pipeline.runners.worker_boot`` with the pool's
arguments.
"""

from __future__ import annotations

import argparse
import os
import sys


def provision_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment ``sdk_worker_main`` reads: the job's options and the runner's endpoints."""
    import grpc
    from apache_beam.portability.api import (
        beam_provision_api_pb2,
        beam_provision_api_pb2_grpc,
        endpoints_pb2,
    )
    from google.protobuf import json_format, text_format

    with grpc.insecure_channel(args.provision_endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        info = stub.GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", args.id)]
        ).info

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    return {
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(args.control_endpoint),
        "LOGGING_API_SERVICE_DESCRIPTOR": descriptor(args.logging_endpoint),
        "WORKER_ID": args.id,
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("id", "logging_endpoint", "artifact_endpoint", "provision_endpoint"):
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument("--control_endpoint", required=True)
    args = parser.parse_args(argv)
    os.environ.update(provision_environment(args))
    from apache_beam.runners.worker import sdk_worker_main

    sys.argv = sys.argv[:1]
    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
