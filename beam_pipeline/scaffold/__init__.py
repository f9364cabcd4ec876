"""`beam-pipeline init`: a pipeline (config, transform module, model module) from a data file."""

from beam_pipeline.scaffold.write import Written, init

__all__ = ["Written", "init"]
