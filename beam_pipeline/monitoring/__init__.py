"""The feedback loop: ``beam-pipeline monitor`` (see the README's "Feedback loop").

- `logs`: reading prediction and feedback log segments (plain functions on Arrow tables);
- `job`: the Beam job (read, join, statistics, traffic, live quality, labelled rows);
- `lineage`: what a model version's lineage says (training statistics, schema, eval metrics);
- `rules`: skew, drift, quality and prediction-shift alerts;
- `report`: report.txt and the self-contained report.html;
- `monitor`: one round, from the window to a MonitoringReport in ML Metadata;
- `retrain`: labelled traffic -> a DataSpan -> the pipeline, under a lock;
- `cli`: what the ``monitor`` command does with its flags (``--retrain``, ``--watch``).

This package may use core, `beam_pipeline.io` and `beam_pipeline.evaluation`, never the stages.
"""
