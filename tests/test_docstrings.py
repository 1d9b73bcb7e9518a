"""The examples in docstrings are part of the documentation: they must run and be right."""

import doctest

import pytest

import simulator.collectives
import simulator.fabric
import simulator.network.maxmin
import simulator.stragglers
import simulator.units
import topologies.faults


@pytest.mark.parametrize("module", [simulator.collectives, simulator.fabric, simulator.network.maxmin,
                                    simulator.stragglers, simulator.units, topologies.faults])
def test_docstring_examples(module: object) -> None:
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
