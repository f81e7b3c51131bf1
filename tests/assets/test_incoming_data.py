"""incoming_data on its own: a day's file checked batch by batch from one open handle; a file that is
not Parquet is refused by name."""

import shutil

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.incoming_data import incoming_data
from ml import io
from orchestration.deployments import local
from tests.conftest import REPO

DAY = "2026-10-01"


@pytest.fixture
def project(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    return tmp_path


def take_in(project):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [incoming_data], resources=local(project), partition_key=DAY, instance=instance, raise_on_error=False
        )


def test_a_day_of_several_row_groups_is_checked_and_versioned(project, telco_raw, spec):
    day = telco_raw.drop(columns=[spec.target.column])
    path = project / "data" / "incoming" / f"{DAY}.parquet"
    pq.write_table(pa.Table.from_pandas(day, preserve_index=False), path, row_group_size=500)
    result = take_in(project)
    assert result.success
    assert {c.check_name for c in result.get_asset_check_evaluations() if c.passed} == {
        "schema",
        "completeness",
        "validity",
        "uniqueness",
        "volume",
    }
    metadata = result.asset_materializations_for_node("incoming_data")[0].metadata
    assert metadata["dagster/row_count"].value == len(day)
    assert [c.name for c in metadata["dagster/column_schema"].value.columns] == list(day.columns)
    record = io.read_json(str(project / "var" / "storage" / "records" / "incoming_data" / f"{DAY}.json"))
    assert record["md5"] == io.file_digest(str(path), "md5") and record["rows"] == len(day)


def test_a_file_that_is_not_parquet_is_refused_by_name(project):
    path = project / "data" / "incoming" / f"{DAY}.parquet"
    path.write_bytes(b"PAR1 truncated")
    result = take_in(project)
    assert not result.success
    message = result.failure_data_for_node("incoming_data").error.message
    assert f"incoming_data {DAY}: {path} is not a readable Parquet file (" in message
    assert not result.asset_materializations_for_node("incoming_data")
