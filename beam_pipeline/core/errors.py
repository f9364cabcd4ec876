"""The exception family. Each leaf carries the CLI exit code DESIGN.md gives it."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the platform raises on purpose."""

    exit_code = 1


class ConfigError(PipelineError):
    """The command, the config or a user module is wrong: fix it and rerun (exit 2)."""

    exit_code = 2


class DataError(PipelineError):
    """Input data cannot be used as it is: fix the data and rerun (exit 1)."""

    exit_code = 1


class StageFailed(PipelineError):
    """A stage raised; the run stops and can be resumed (exit 1)."""

    exit_code = 1

    def __init__(self, stage: str, message: str, resume: str = "", exit_code: int = 1) -> None:
        self.stage = stage
        self.message = message
        self.resume = resume
        self.exit_code = exit_code
        text = f"stage {stage!r} failed: {message}"
        if resume:
            text += f"\nresume with: {resume}"
        super().__init__(text)


class ValidationFailed(PipelineError):
    """The validation gate stopped the run: the data needs a look (exit 3)."""

    exit_code = 3

    def __init__(self, anomalies: list[dict[str, str]]) -> None:
        self.anomalies = anomalies
        lines = [f"validation stopped the run: {len(anomalies)} blocking anomalies"]
        lines += [
            f"  {a['split']}: {a['feature']}: {a['kind']}: {a['description']}" for a in anomalies
        ]
        super().__init__("\n".join(lines))
