"""Package metadata. Also passed to Beam as --setup_file so remote workers get the same code."""

from setuptools import find_packages, setup

setup(
    name="beam-pipeline",
    version="0.1.0",
    description="A Beam-native ML pipeline platform: ingest, validate, transform, train, serve.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["beam_pipeline", "beam_pipeline.*"]),
    install_requires=[
        "apache-beam[gcp,dill]==2.72.0",
        "tensorflow==2.16.2",
        "tf_keras==2.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-transform==1.16.0",
        "tfx-bsl==1.16.1",
        "tensorflow-metadata==1.16.1",
        "ml-metadata==1.16.0",
        "tensorflow-serving-api==2.16.1",
        "pyarrow==10.0.1",
        "keras-tuner==1.3.5",
        "scipy==1.13.1",  # keras-tuner's Bayesian optimization
        "scikit-learn==1.5.2",
        "numba==0.61.2",  # evaluation's compiled kernels (slice-key hashing, sliced scatters)
        "pyyaml",
        "rich",
        # serving and the web UI: a real ASGI server, metrics in Prometheus' text format
        "starlette",
        "uvicorn",
        "httptools",  # uvicorn's fast HTTP parser (h11 cost 20 % of a request)
        "uvloop",
        "orjson",
        "prometheus-client",
    ],
    extras_require={
        # ML Metadata speaks MySQL/MariaDB and PostgreSQL through its own bundled client; these
        # extras add the Python clients used to create databases and check connectivity.
        "mysql": ["PyMySQL"],
        "postgresql": ["pg8000"],
        # s3:// for TensorFlow (SavedModels, tf.data) and for Beam's FileSystems
        "s3": ["tensorflow-io==0.37.1", "boto3"],
        "notebook": ["ipykernel", "nbformat"],
        "dev": [
            "pytest",
            "pytest-xdist",
            "ruff",
            "httpx",
            "hypothesis",
            "moto[server]",
            "gcp-storage-emulator",
            "nbclient",
            "ipykernel",
            "nbformat",
            "playwright",
            "pyte",  # a terminal emulator: what the progress display leaves on screen
        ],
    },
    entry_points={"console_scripts": ["beam-pipeline=beam_pipeline.cli:entry"]},
)
