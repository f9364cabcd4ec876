from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2 as pb
from tensorflow_metadata.proto.v0 import schema_pb2

from beam_pipeline.core.artifacts import file_digest, load_schema
from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.core.metadata import Store
from beam_pipeline.stages import schema as schema_stage
from beam_pipeline.stages import statistics
from beam_pipeline.stages.schema import SchemaSection, export_latest, read_schema_file
from beam_pipeline.stages.statistics import StatisticsSection
from tests.stages._fixtures import make_config, make_ctx, penguin_rows, write_examples

REPO = Path(__file__).resolve().parents[2]
CURATED = """
feature { name: "species" type: BYTES domain: "species" presence { min_fraction: 1.0 } }
feature { name: "weight" type: FLOAT float_domain { min: 0 max: 1 } }
string_domain { name: "species" value: "Adelie" value: "Gentoo" }
"""


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats")
    examples = write_examples(
        tmp / "examples", {"train": penguin_rows(40), "eval": penguin_rows(8)}
    )
    ctx = make_ctx(statistics.STAGE, make_config(tmp, {}), tmp / "out")
    return statistics.run(StatisticsSection(html=False), {"examples": examples}, ctx)["statistics"]


def _run(tmp_path: Path, section: SchemaSection, stats):
    ctx = make_ctx(schema_stage.STAGE, make_config(tmp_path, {}), tmp_path / "out")
    return schema_stage.run(section, {"statistics": stats}, ctx)["schema"]


def test_infers_from_train_statistics(tmp_path, stats):
    out = _run(tmp_path, SchemaSection(), stats)
    schema = load_schema(out)
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == {"island", "species", "count", "weight"}
    assert by_name["weight"].type == schema_pb2.FLOAT
    assert by_name["count"].type == schema_pb2.INT
    domains = {d.name: set(d.value) for d in schema.string_domain}
    assert domains[by_name["island"].domain] == {"Biscoe", "Dream", "Torgersen"}
    assert out.properties == {"source": "inferred", "num_features": 4}
    assert (out.path / "schema.pbtxt").read_text().startswith("feature {")


def test_min_domain_mass_applies_to_string_domains_only(tmp_path, stats):
    schema = load_schema(_run(tmp_path, SchemaSection(min_domain_mass=0.9), stats))
    by_name = {f.name: f for f in schema.feature}
    assert by_name["island"].distribution_constraints.min_domain_mass == pytest.approx(0.9)
    assert by_name["species"].distribution_constraints.min_domain_mass == pytest.approx(0.9)
    assert not by_name["weight"].HasField("distribution_constraints")


def test_curated_schema_is_imported_and_keyed_by_content(tmp_path, stats):
    file = tmp_path / "schema.pbtxt"
    file.write_text(CURATED)
    section = SchemaSection(path=str(file))
    ctx = make_ctx(schema_stage.STAGE, make_config(tmp_path, {}), tmp_path / "out")

    prepared = schema_stage.prepare(section, {"statistics": stats}, ctx)
    assert prepared.key == {"schema_sha": file_digest([str(file)])}
    out = schema_stage.run(section, {"statistics": stats}, ctx)["schema"]
    assert out.properties["source"] == "curated"
    assert out.properties["num_features"] == 2
    assert load_schema(out) == text_format.Parse(CURATED, schema_pb2.Schema())

    file.write_text(CURATED + "\n# edited\n")
    assert schema_stage.prepare(section, {"statistics": stats}, ctx).key != prepared.key


def test_missing_curated_schema_names_the_file(tmp_path, stats):
    section = SchemaSection(path=str(tmp_path / "nope.pbtxt"))
    ctx = make_ctx(schema_stage.STAGE, make_config(tmp_path, {}), tmp_path / "out")
    with pytest.raises(ConfigError, match=r"schema.path: .*nope.pbtxt: file not found"):
        schema_stage.prepare(section, {"statistics": stats}, ctx)


def test_unparseable_curated_schema_names_the_file(tmp_path):
    file = tmp_path / "bad.pbtxt"
    file.write_text("feature { name: 'x' type: NOT_A_TYPE }")
    with pytest.raises(ConfigError, match=r"bad.pbtxt: not a valid schema.pbtxt"):
        read_schema_file(str(file))


def test_path_resolves_against_the_config_folder(tmp_path):
    (tmp_path / "cfg").mkdir()
    config_file = tmp_path / "cfg" / "p.yaml"
    config_file.write_text(
        yaml.safe_dump({"pipeline": {"name": "p"}, "schema": {"path": "s.pbtxt"}})
    )
    config = load(config_file, sections={"schema": SchemaSection})
    assert config.section("schema").path == str(tmp_path / "cfg" / "s.pbtxt")


@pytest.mark.parametrize("mass", [0, 1.5])
def test_min_domain_mass_is_checked(mass):
    with pytest.raises(ConfigError, match=r"schema.min_domain_mass must be in \(0, 1\]"):
        SchemaSection(min_domain_mass=mass)


def test_inference_needs_a_train_split(tmp_path, stats):
    stats = type(stats)(stats.type, stats.uri, {"splits": ["eval"]})
    with pytest.raises(DataError, match="without a 'train' split"):
        _run(tmp_path, SchemaSection(), stats)


def test_export_latest(tmp_path, stats):
    config = make_config(tmp_path, {})
    store = Store(config)
    with pytest.raises(ConfigError, match="no schema yet"):
        export_latest(store, str(tmp_path / "x.pbtxt"))

    ctx = make_ctx(schema_stage.STAGE, config, tmp_path / "out", store)
    out = schema_stage.run(SchemaSection(), {"statistics": stats}, ctx)["schema"]
    run_ctx = store.run_context("run1")
    exec_id = store.start_execution("schema", run_ctx, {})
    store.finish_execution(exec_id, pb.Execution.COMPLETE, run_ctx, {}, {"schema": out}, {})

    (tmp_path / "dest").mkdir()
    written = export_latest(store, str(tmp_path / "dest"))
    assert written == str(tmp_path / "dest" / "schema.pbtxt")
    assert read_schema_file(written) == load_schema(out)


def test_penguins_curated_schema_matches_the_bundled_data(tmp_path):
    import pandas as pd
    import tensorflow_data_validation as tfdv

    schema = read_schema_file(str(REPO / "configs" / "penguins" / "schema.pbtxt"))
    assert [f.name for f in schema.feature] == [
        "species", "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g",
    ]  # fmt: skip
    df = pd.read_csv(REPO / "data" / "penguins" / "penguins_processed.csv")
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(df), schema)
    assert dict(anomalies.anomaly_info) == {}
    df.loc[0, "species"] = 3
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(df), schema)
    assert list(anomalies.anomaly_info) == ["species"]
