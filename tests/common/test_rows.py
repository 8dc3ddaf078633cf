import dataclasses

import pytest
from pydantic import BaseModel, ValidationError

from common.rows import decoded, model_of


class View(BaseModel):
    id: int
    name: str
    note: str | None = None


@dataclasses.dataclass
class Record:
    id: int
    label: str = "none"


def test_columns_named_as_fields_are_copied_and_given_values_win():
    row = {"id": 3, "name": "a", "extra": "ignored", "note": "n"}
    assert model_of(View, row) == View(id=3, name="a", note="n")
    assert model_of(View, row, name="b") == View(id=3, name="b", note="n")


def test_a_missing_optional_column_keeps_the_default_and_a_missing_required_one_fails():
    assert model_of(View, {"id": 1, "name": "x"}).note is None
    with pytest.raises(ValidationError):
        model_of(View, {"id": 1})


def test_dataclasses_work_too_and_other_types_are_refused():
    assert model_of(Record, {"id": 2, "label": "l", "other": 1}) == Record(2, "l")
    assert model_of(Record, {"id": 2}) == Record(2)
    with pytest.raises(TypeError):
        model_of(dict, {"id": 1})


def test_decoded_parses_the_named_json_columns_only_and_keeps_none():
    row = {"a": '{"x": 1}', "b": '{"y": 2}', "c": {"already": True}}
    assert decoded(row, "a", "c", "missing") == {"a": {"x": 1}, "b": '{"y": 2}', "c": {"already": True}}
    assert decoded(None, "a") is None
