"""Online serving: TF Serving's REST and gRPC APIs over the pushed models, with adaptive
batching, hot swap, a prediction log and a feedback log (``beam-pipeline serve``).

Modules: `section` (the ``serving:`` config), `inputs` (request values to model inputs),
`models` (versions, hot swap), `batching`, `service` (what REST and gRPC share), `app` (REST),
`grpc_service`, `log` (the segment writer), `metrics`, `server` (the process), `feedback` (bulk
import). Imports only core, `beam_pipeline.io` and `beam_pipeline.evaluation`.
"""
