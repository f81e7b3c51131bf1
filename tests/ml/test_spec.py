"""The dataset spec loader: the shipped spec loads; each kind of broken spec fails naming the problem."""

import copy

import pytest
import yaml

from ml.params import ParamsError, load_params, parse_params
from tests.conftest import REPO

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def raw_spec() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text())["dataset"])


def broken(raw: dict) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params({**SHIPPED, "dataset": raw}, origin="params.yaml")
    return str(caught.value)


def test_shipped_spec_loads(spec):
    assert spec.target.column == "churn" and spec.target.positive == "Yes"
    assert spec.source.resolved_format == "csv"
    assert spec.id.generate == "row_number"
    assert len(spec.feature_columns) == 19
    assert spec.expected_columns(include_target=True)[0] == spec.id.column
    assert spec.target.column not in spec.expected_columns(include_target=False)


def test_unknown_column_in_ranges(raw_spec):
    raw_spec["ranges"]["tenur"] = {"min": 0}
    message = broken(raw_spec)
    assert "ranges: unknown column 'tenur'" in message and "tenure" in message


def test_unknown_column_in_categories_and_nullable(raw_spec):
    raw_spec["categories"]["colour"] = ["red"]
    raw_spec["nullable"].append("not_a_column")
    message = broken(raw_spec)
    assert "categories: unknown column 'colour'" in message
    assert "nullable: unknown column 'not_a_column'" in message


def test_range_on_a_categorical_column_is_unknown_as_numeric(raw_spec):
    raw_spec["ranges"]["contract"] = {"min": 0}
    assert "ranges: unknown column 'contract' (declared numeric columns" in broken(raw_spec)


def test_target_missing(raw_spec):
    del raw_spec["target"]
    assert "dataset.target: Field required" in broken(raw_spec)


def test_column_in_two_types(raw_spec):
    raw_spec["columns"]["categorical"].append("tenure")
    assert "column 'tenure' is declared as both numeric and categorical" in broken(raw_spec)


def test_column_twice_in_one_type(raw_spec):
    raw_spec["columns"]["numeric"].append("tenure")
    assert "column 'tenure' is declared twice in numeric" in broken(raw_spec)


def test_target_declared_as_feature(raw_spec):
    raw_spec["columns"]["categorical"].append("churn")
    assert "target column 'churn' is also declared as a categorical feature" in broken(raw_spec)


def test_unknown_key_is_named(raw_spec):
    raw_spec["colums"] = {}
    assert "dataset.colums: unknown key" in broken(raw_spec)


def test_unquoted_yes_label_is_explained(raw_spec):
    raw_spec["target"]["positive"] = True  # what YAML makes of a bare `Yes`
    assert "dataset.target.positive" in broken(raw_spec) and "quote it" in broken(raw_spec)


def test_min_above_max(raw_spec):
    raw_spec["ranges"]["tenure"] = {"min": 10, "max": 1}
    assert "dataset.ranges.tenure: min 10.0 is greater than max 1.0" in broken(raw_spec)


def test_unknown_source_suffix(raw_spec):
    raw_spec["source"]["uri"] = "data/source/customers.xlsx"
    assert "cannot tell the format of 'data/source/customers.xlsx'" in broken(raw_spec)


def test_no_feature_columns(raw_spec):
    raw_spec["columns"] = {}
    raw_spec["ranges"] = raw_spec["categories"] = {}
    raw_spec["nullable"] = []
    assert "no feature columns declared" in broken(raw_spec)


def test_loading_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("features: {}\n")
    with pytest.raises(ParamsError, match=r"params.yaml: dataset: Field required"):
        load_params(path)
    with pytest.raises(ParamsError, match="missing.yaml: no such file"):
        load_params(tmp_path / "missing.yaml")
    path.write_text("dataset: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_boolean_tokens_match_by_text(spec):
    tokens = spec.booleans
    assert tokens.true_keys == {"1"} and tokens.false_keys == {"0"}
    accepted = tokens.accepted_values()
    assert 1 in accepted and "1" in accepted and 0 in accepted


def test_describe_columns(spec):
    assert spec.describe("churn") == "target: 'Yes' positive, 'No' negative"
    assert spec.describe("customer_id") == "id (generated: row_number)"
    assert spec.describe("total_charges") == "numeric feature, nullable, range 0.0 .. 50000.0"
    assert spec.describe("contract") == "categorical feature, 3 allowed values"
    assert spec.describe("partner") == "boolean feature"
    assert spec.describe("loyalty_points") == "not in the dataset spec"


@pytest.mark.parametrize(
    ("where", "name", "shown"),
    [
        ("numeric", "", "''"),
        ("numeric", "ten\x00ure", "'\\x00'"),
        ("categorical", "con\u200btract", "'\\u200b'"),
        ("boolean", "female\n", "'\\n'"),
        ("target", "", "''"),
        ("id", "customer\u2028id", "'\\u2028'"),
    ],
)
def test_an_empty_column_name_or_one_with_an_invisible_character_is_refused_naming_it(raw_spec, where, name, shown):
    """No file's column can be matched by an empty name, and one with a control or invisible character is
    told apart from the data's by nothing a person sees: every file would fail as 'missing column'."""
    if where in ("target", "id"):
        raw_spec[where]["column"] = name
    else:
        old = raw_spec["columns"][where][0]
        raw_spec["columns"][where][0] = name
        for section in ("ranges", "categories"):
            if old in raw_spec[section]:
                raw_spec[section][name] = raw_spec[section].pop(old)
    message = broken(raw_spec)
    assert repr(name) in message and shown in message, message


def test_a_column_name_in_another_script_is_accepted(raw_spec):
    raw_spec["columns"]["numeric"][0] = "ténure"
    raw_spec["ranges"]["ténure"] = raw_spec["ranges"].pop("tenure")
    assert "ténure" in parse_params({**SHIPPED, "dataset": raw_spec}).dataset.columns.numeric


@pytest.mark.parametrize("bound", ["min", "max"])
def test_a_range_bound_that_is_not_a_number_is_refused_naming_it(raw_spec, bound):
    """NaN compares false with everything: a range with a NaN bound would pass every value."""
    raw_spec["ranges"]["tenure"][bound] = float("nan")
    message = broken(raw_spec)
    assert "ranges.tenure" in message and bound in message and "nan" in message.lower(), message


def test_an_empty_target_label_is_refused(raw_spec):
    raw_spec["target"]["positive"] = ""
    assert "target.positive" in broken(raw_spec)
