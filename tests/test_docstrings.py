"""The examples in docstrings are part of the documentation: they must run and be right."""

import doctest

import pytest

import simulator.collectives.algorithms
import simulator.core.stragglers
import simulator.network.fabric
import simulator.network.maxmin
import simulator.units
import topologies.cables
import topologies.faults


@pytest.mark.parametrize("module", [simulator.collectives.algorithms, simulator.network.fabric,
                                    simulator.network.maxmin,
                                    simulator.core.stragglers, simulator.units, topologies.cables, topologies.faults])
def test_docstring_examples(module: object) -> None:
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
