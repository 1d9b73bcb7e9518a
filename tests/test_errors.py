"""One reading of validation errors (simulator/errors.py): where the error points, as the user wrote it, and
what is allowed there, for every shape of spec the project validates."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.errors import SpecError, check_choice, check_keys, from_validation, location, one_line

Fraction = Annotated[float, Field(gt=0, le=1)]


class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: int = Field(1, ge=1, le=1000)
    share: Fraction | None = None
    mode: Literal["sync", "async"] = "sync"


class Tree(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leaves: list[Leaf] = Field(min_length=1)
    by_name: dict[str, Leaf] = {}
    rate: float = Field(1.0, gt=0)


def error_of(data: dict, **kwargs: object) -> SpecError:
    with pytest.raises(ValidationError) as info:
        Tree.model_validate(data)
    return from_validation(info.value, Tree, **kwargs)


@pytest.mark.parametrize(("data", "text"), [
    ({"leaves": [{"name": "a", "steps": 0}]}, "leaves[0].steps: got 0; allowed: 1 to 1,000"),
    ({"leaves": [{"name": "a", "mode": "asink"}]}, "leaves[0].mode: got 'asink'; allowed: sync, async"),
    ({"leaves": [{"name": "a", "share": 2}]}, "leaves[0].share: got 2; allowed: a number > 0 and <= 1"),
    ({"leaves": [{"name": "a", "stepz": 2}]}, "leaves[0].stepz: got 2; unknown field; allowed: name, steps, "
                                              "share, mode"),
    ({"leaves": [{}]}, "leaves[0].name: got None; required; required fields: name"),
    ({"leaves": []}, "leaves: got []; allowed: at least 1 item(s)"),
    ({"leaves": [{"name": "a"}], "rate": -1}, "rate: got -1; allowed: a number > 0"),
    ({"leaves": [{"name": "a"}], "by_name": {"x": {"name": "b", "share": 0}}},
     "by_name.x.share: got 0; allowed: a number > 0 and <= 1"),
    ({"leaves": [{"name": "a"}], "by_name": {"x": {"name": "b", "shar": 0}}},
     "by_name.x.shar: got 0; unknown field; allowed: name, steps, share, mode"),
    ({"leafs": [{"name": "a"}], "rat": 2}, "leafs: got [{'name': 'a'}]; unknown field (unknown too: rat); allowed: "
                                          "leaves, by_name, rate"),  # before the missing field it misspells
])
def test_an_error_names_where_it_points_and_what_is_allowed_there(data: dict, text: str) -> None:
    assert str(error_of(data)) == text


def test_prefix_default_and_noun() -> None:
    assert str(error_of({"leaves": [{"name": "a"}], "x": 1}, prefix="spec.yaml:", noun="key")) == (
        "spec.yaml:x: got 1; unknown key; allowed: leaves, by_name, rate")
    with pytest.raises(ValidationError) as info:
        Tree.model_validate([1])
    assert str(from_validation(info.value, Tree, default="tree")).startswith("tree: got [1];")


def test_a_validators_own_spec_error_is_kept_whole_under_the_field() -> None:
    class Sized(BaseModel):
        size: int

        @field_validator("size")
        @classmethod
        def _small(cls, value: int) -> int:
            if value > 10:
                raise SpecError("bytes", value, "allowed: at most 10")
            return value

    with pytest.raises(ValidationError) as info:
        Sized(size=11)
    assert str(from_validation(info.value, Sized, prefix="x.")) == "x.size.bytes: got 11; allowed: at most 10"


def test_location_and_one_line() -> None:
    assert location(("jobs", 0, "set", 2)) == "jobs[0].set[2]"
    assert location(()) == ""
    assert one_line("a\nb\tc") == "a\\nb\\tc"


def test_a_value_or_key_outside_what_is_allowed_is_one_line_naming_it() -> None:
    check_choice("op", "allreduce", ("allreduce", "alltoall"))
    with pytest.raises(SpecError, match=r"^op: got 'allreduse'; allowed: allreduce, alltoall$"):
        check_choice("op", "allreduse", ("allreduce", "alltoall"))
    check_keys({"a": 1}, ("a", "b"))
    with pytest.raises(SpecError, match=r"^file.yaml:c: got 3; unknown key; allowed: a, b$"):
        check_keys({"a": 1, "c": 3}, ("a", "b"), "file.yaml:")
