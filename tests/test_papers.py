"""docs/PAPERS.md's commands give the numbers it states (the engine, against the closed form the page was
generated with)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from simulator.cli import main

PAGE = Path(__file__).resolve().parent.parent / "docs" / "PAPERS.md"


def landed() -> list[tuple[str, str, str]]:
    """(claim, dessim's value as printed, command) of each row of the page's first table."""
    table = PAGE.read_text().split("### DES paper: the nearest", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return [(row[0], row[2], row[-1].strip("`")) for row in rows]


@pytest.mark.parametrize(("claim", "value", "command"), landed(), ids=[row[0][:40] for row in landed()])
def test_each_landing_command_gives_the_number_on_the_page(capsys, claim: str, value: str, command: str) -> None:
    args = shlex.split(command)
    assert args[0] == "dessim"
    with pytest.raises(SystemExit) as exit_info:
        main([*args[1:], "--json"])
    assert exit_info.value.code == 0
    document = json.loads(capsys.readouterr().out)
    ps, des = document["strategies"]
    if value.endswith("%"):
        assert 1 - des["bytes_on_wire"] / ps["bytes_on_wire"] == pytest.approx(float(value[:-1]) / 100, abs=5e-5)
    else:
        assert ps["step_time_s"] / des["step_time_s"] == pytest.approx(float(value[:-1]), abs=5e-3)
    assert len(landed()) == 5
