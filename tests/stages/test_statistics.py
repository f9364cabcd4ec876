from __future__ import annotations

import logging

import pytest

from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.stages import statistics
from beam_pipeline.stages.statistics import StatisticsSection, load_statistics
from tests.stages._fixtures import make_config, make_ctx, penguin_rows, write_examples


def test_counts_features_and_files(tmp_path, caplog):
    examples = write_examples(
        tmp_path / "examples", {"train": penguin_rows(30), "eval": penguin_rows(12)}
    )
    section = StatisticsSection()
    config = make_config(tmp_path, {"statistics": section})
    ctx = make_ctx(statistics.STAGE, config, tmp_path / "out")

    with caplog.at_level(logging.INFO, logger="beam_pipeline.stages.statistics"):
        out = statistics.run(section, {"examples": examples}, ctx)["statistics"]

    assert out.type == "ExampleStatistics"
    assert out.properties["splits"] == ["train", "eval"]
    assert out.properties["num_examples"] == {"train": 30, "eval": 12}
    assert out.properties["num_features"] == 4
    train = load_statistics(out, "train")
    assert train.datasets[0].num_examples == 30
    assert load_statistics(out, "eval").datasets[0].num_examples == 12
    names = {f.path.step[0] for f in train.datasets[0].features}
    assert names == {"island", "species", "count", "weight"}
    assert (out.split_dir("train") / "statistics.html").read_text().startswith("<")
    assert "statistics: train 30 / eval 12 examples, 4 features" in caplog.text


def test_html_off(tmp_path):
    examples = write_examples(tmp_path / "examples", {"train": penguin_rows(5)})
    section = StatisticsSection(html=False)
    ctx = make_ctx(statistics.STAGE, make_config(tmp_path, {}), tmp_path / "out")
    out = statistics.run(section, {"examples": examples}, ctx)["statistics"]
    assert (out.split_dir("train") / "FeatureStats.pb").is_file()
    assert not (out.split_dir("train") / "statistics.html").exists()


@pytest.mark.parametrize("rate", [0, 2, -0.5])
def test_sample_rate_is_checked(rate):
    with pytest.raises(ConfigError, match=r"statistics.sample_rate must be in \(0, 1\]"):
        StatisticsSection(sample_rate=rate)


def test_missing_split_files_name_the_folder(tmp_path):
    examples = write_examples(tmp_path / "examples", {"train": penguin_rows(3)})
    examples.properties["splits"] = ["train", "eval"]
    ctx = make_ctx(statistics.STAGE, make_config(tmp_path, {}), tmp_path / "out")
    with pytest.raises(DataError, match="Split-eval.*no data-"):
        statistics.run(StatisticsSection(), {"examples": examples}, ctx)


def test_load_statistics_unknown_split(tmp_path):
    examples = write_examples(tmp_path / "examples", {"train": penguin_rows(3)})
    ctx = make_ctx(statistics.STAGE, make_config(tmp_path, {}), tmp_path / "out")
    out = statistics.run(StatisticsSection(html=False), {"examples": examples}, ctx)["statistics"]
    with pytest.raises(DataError, match="no statistics for split 'eval'"):
        load_statistics(out, "eval")
