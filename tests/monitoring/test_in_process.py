"""The monitor's in-process path (DirectRunner in_memory) against its Beam job on the same
records: the same statistics proto, counters, traffic, live metrics, decile counts, labelled rows
and rejected lines (`job.run_in_process`, `statistics.InProcessStatistics`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest


def _sorted_stats(path: Path) -> object:
    """The statistics proto with its features in name order (merge order is the runner's)."""
    import tensorflow_data_validation as tfdv

    stats = tfdv.load_stats_binary(str(path))
    for ds in stats.datasets:
        features = sorted(ds.features, key=lambda f: tuple(f.path.step))
        del ds.features[:]
        ds.features.extend(features)
    return stats


def _lines(folder: Path, pattern: str) -> list[str]:
    return sorted(x for f in folder.glob(pattern) for x in f.read_text().splitlines() if x)


def test_in_process_run_writes_and_returns_what_the_beam_job_does(
    healthy: dict, tmp_path: Path
) -> None:
    from beam_pipeline.core.artifacts import STATS_FILE
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring.job import run_job
    from beam_pipeline.monitoring.monitor import monitor_job
    from beam_pipeline.runners.options import pipeline_options, runs_in_process

    config = load(healthy["config"])
    assert runs_in_process(config, None, str(tmp_path))
    assert not runs_in_process(config, ["--runner=PortableRunner"], str(tmp_path))
    until = dt.datetime.now(dt.UTC)
    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # the corrupt 2020 segment counts too
    job, _ = monitor_job(config, Store(config), since, until, None)
    assert job.segments and job.buckets and job.slice_specs
    results = {}
    for in_process in (True, False):
        out = tmp_path / ("in-process" if in_process else "beam")
        results[in_process] = run_job(
            replace(job, output=str(out)), pipeline_options(config), in_process
        )
    mine, beam = results[True], results[False]
    assert mine["counters"] == beam["counters"]
    assert mine["counters"]["predictions"] == 1502 and mine["counters"]["corrupt_lines"] == 2
    assert mine["labels"] == beam["labels"] and mine["buckets"] == beam["buckets"]
    assert sorted(mine["traffic"], key=json.dumps) == sorted(beam["traffic"], key=json.dumps)
    by_key = {(r["version"], r["slice"]): r["metrics"] for r in beam["quality"]}
    assert len(mine["quality"]) == len(by_key) > 1
    for row in mine["quality"]:
        assert row["metrics"] == pytest.approx(by_key[row["version"], row["slice"]], nan_ok=True)
    a, b = tmp_path / "in-process", tmp_path / "beam"
    assert _sorted_stats(a / STATS_FILE) == _sorted_stats(b / STATS_FILE)
    for pattern in ("labelled/rows*.csv", "labelled/request_ids*.txt", "rejected/*.jsonl"):
        assert _lines(a, pattern) == _lines(b, pattern), pattern
    assert len(_lines(a, "labelled/request_ids*.txt")) == mine["counters"]["labelled"]


def test_in_process_statistics_are_tfdvs_on_large_and_empty_inputs() -> None:
    """Past the quantile sketch's exact size, several batches, strings with ties in the top-k,
    nulls; and no batch at all: the proto TFDV's Beam transform makes. Exactly, but for what
    TFDV reads off its quantile sketch (median, histograms), whose answer depends on the order
    its parts are merged in (Beam's own differs with the bundling): there, within the sketch's
    error (epsilon 0.01) in rank."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv

    from beam_pipeline.monitoring.statistics import InProcessStatistics

    rng = np.random.default_rng(3)
    words = np.array([f"w{i}" for i in range(40)])
    batches, values = [], {"x": [], "i": []}
    for m in (20_000, 20_000, 20_000, 10_000):
        x, i = rng.lognormal(size=m), rng.integers(0, 9, size=m)
        offsets = pa.array(np.arange(m + 1, dtype=np.int32))
        mask = rng.random(m) < 0.05
        values["x"].append(x[~mask])
        values["i"].append(i)
        batches.append(
            pa.RecordBatch.from_arrays(
                [
                    pa.ListArray.from_arrays(offsets, pa.array(x), mask=pa.array(mask)),
                    pa.ListArray.from_arrays(offsets, pa.array(words[rng.integers(0, 40, m)])),
                    pa.ListArray.from_arrays(offsets, pa.array(i)),
                ],
                names=["x", "s", "i"],
            )
        )
    data = {k: np.sort(np.concatenate(v)) for k, v in values.items()}
    for inputs in (batches, []):
        mine = InProcessStatistics(tfdv.StatsOptions())
        for batch in inputs:
            mine.add(batch)
        with beam.Pipeline() as p:
            got = (
                p
                | beam.Create(inputs, reshuffle=False).with_output_types(pa.RecordBatch)
                | tfdv.GenerateStatistics(tfdv.StatsOptions())
                | beam.combiners.ToList()
            )
            _ = got | beam.Map(_same, mine.result(), data)


def _same(protos: list, want: object, data: dict[str, np.ndarray]) -> None:
    [got] = protos
    ranks = {}
    for stats in (got, want):
        for ds in stats.datasets:
            features = sorted(ds.features, key=lambda f: tuple(f.path.step))
            del ds.features[:]
            ds.features.extend(features)
            for f in ds.features:
                if f.HasField("num_stats"):
                    ranks.setdefault(f.path.step[0], []).append(_sketched(f, data))
    assert got == want
    for name, (a, b) in ranks.items():
        assert len(a) == len(b) > 10 and np.abs(np.array(a) - np.array(b)).max() <= 0.01, name


def _sketched(feature: object, data: dict[str, np.ndarray]) -> list[float]:
    """Removes what TFDV reads off its quantile sketch; returns it as ranks in the data (0..1):
    the median, each quantile boundary, each equal-width bucket's count."""
    values = data[feature.path.step[0]]
    n = len(values)
    s = feature.num_stats
    out = [np.searchsorted(values, s.median) / n]
    for h in s.histograms:
        for bucket in h.buckets:
            if h.type == h.QUANTILES:
                out.append(np.searchsorted(values, bucket.high_value) / n)
            else:
                out.append(bucket.sample_count / n)
    s.ClearField("median")
    s.ClearField("histograms")
    return out


def test_in_process_statistics_refuse_options_they_do_not_reproduce() -> None:
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from beam_pipeline.monitoring.statistics import InProcessStatistics

    with pytest.raises(ValueError, match="default statistics options"):
        InProcessStatistics(tfdv.StatsOptions(schema=schema_pb2.Schema()))
