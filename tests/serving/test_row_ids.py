"""A request's id may be text or an integer: it is logged as text, as every other file's ids are read."""

import pytest

from serving.validation import RequestError, RowValidator


def row(telco_raw, **change):
    first = telco_raw.drop(columns=["churn"]).iloc[0].to_dict()
    return {k: (None if v != v else v) for k, v in first.items()} | change


def test_an_integer_id_is_taken_as_its_text(spec, telco_raw):
    (clean,) = RowValidator(spec).validate([row(telco_raw, customer_id=7)])
    assert clean["customer_id"] == "7"


@pytest.mark.parametrize("ident", [7.5, True, [7]])
def test_other_ids_are_refused_naming_the_column(spec, telco_raw, ident):
    with pytest.raises(RequestError, match=r"column 'customer_id': value .* is not text or an integer"):
        RowValidator(spec).validate([row(telco_raw, customer_id=ident)])
