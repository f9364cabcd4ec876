"""The core: config, errors, metadata (ML Metadata), artifacts (the catalog), stage (the
contract), orchestrator (the DAG runner) and the model registry. It imports no part above it."""
