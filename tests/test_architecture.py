"""The house rules of the import graph: no circles, and no layer imports one above it. grimp builds the graph
of every import, at module level or inside functions; imports only for type checking are left out."""

from __future__ import annotations

import grimp
import networkx as nx
import pytest

PACKAGES = ("simulator", "workloads", "topologies")
# Top to bottom: a module may import its own layer and those below, never one above. Each entry is a list of
# module names; a name covers its submodules.
LAYERS = [
    ["simulator.cli", "simulator.cli_executor"],
    ["simulator.console"],
    ["simulator.calibration"],
    ["simulator.run.sweep", "simulator.run.jobs"],
    ["simulator.run.spec"],
    ["simulator.run.training", "simulator.run.closed_form", "simulator.run.collective"],
    ["simulator.run.fidelity"],
    ["simulator.results"],
    ["simulator.strategies"],
    ["simulator.core", "simulator.collectives"],
    ["simulator.compute", "simulator.network"],
    ["simulator.executor"],
    ["workloads", "topologies"],
    ["simulator.options", "simulator.errors", "simulator.units"],
]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)


def layer_of(module: str) -> int:
    """Index of the most specific layer entry covering ``module`` (0 is the top)."""
    best = max((name for layer in LAYERS for name in layer if module == name or module.startswith(name + ".")),
               key=len, default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def test_no_import_circles(graph: grimp.ImportGraph) -> None:
    edges = nx.DiGraph([(m, i) for m in graph.modules for i in graph.find_modules_directly_imported_by(m)])
    assert [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1] == []


def package_of(module: str) -> str:
    """The folder a module belongs to: ``simulator.run.spec`` -> ``simulator.run``; top-level modules stand alone."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "simulator" else parts[0]


def test_no_circles_between_folders(graph: grimp.ImportGraph) -> None:
    """Folders, not only modules, import one way: a folder never imports one that imports it back."""
    edges = nx.DiGraph([(package_of(m), package_of(i)) for m in graph.modules
                        for i in graph.find_modules_directly_imported_by(m)
                        if i.split(".")[0] in PACKAGES and package_of(m) != package_of(i)])
    assert [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1] == []


def test_no_module_imports_a_layer_above_its_own(graph: grimp.ImportGraph) -> None:
    upward = []
    for module in sorted(graph.modules):
        if module in PACKAGES or module == "simulator.strategies":  # package inits gather their submodules
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.split(".")[0] in PACKAGES and layer_of(imported) < layer_of(module):
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_the_executor_needs_nothing_of_the_simulator_but_options_and_errors(graph: grimp.ImportGraph) -> None:
    """The executor runs the strategies for real; it shares workloads, options and errors with the simulator,
    never its model (calibration, in its own folder, sits above both)."""
    allowed = ("simulator.executor", "simulator.options", "simulator.errors", "workloads", "topologies")
    executor = [m for m in graph.modules if m.startswith("simulator.executor")]
    used = {i for m in executor for i in graph.find_modules_directly_imported_by(m)}
    assert sorted(i for i in used if i.split(".")[0] in PACKAGES and not i.startswith(allowed)) == []


def test_the_readme_layout_table_matches_the_tree() -> None:
    """Every module and package of simulator/ and every top-level folder is in the README's layout table,
    and every path the table names exists."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    table = (root / "README.md").read_text().split("## Layout", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    named = {cell.strip().strip("`").rstrip("/") for row in table.splitlines()[2:]
             for cell in row.split("|")[1].split(", ")}
    assert all((root / path).exists() for path in named), sorted(p for p in named if not (root / p).exists())
    tree = {f"simulator/{p.name}".removesuffix("/") for p in (root / "simulator").iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())}
    folders = {"workloads", "topologies", "notebooks", "tests", "benchmarks", "docs"}
    assert all((root / folder).is_dir() for folder in folders)
    assert sorted((tree | folders) - named) == []


def test_the_command_line_module_is_thin() -> None:
    """cli.py parses; rendering lives in console.py, runs in runspec, the executor's commands in cli_executor."""
    from pathlib import Path

    source = Path(__file__).resolve().parent.parent / "simulator" / "cli.py"
    assert len(source.read_text().splitlines()) < 400


def test_the_command_line_loads_no_pandas_networkx_simpy_or_numba_until_a_command_needs_them() -> None:
    """``dessim --help``, ``list`` and bad-input errors start fast (issue 18 item 5): importing the command line
    pulls in none of the heavy libraries; commands import them when they run."""
    import subprocess
    import sys

    code = ("import sys, simulator.cli\n"
            "print(sorted(m for m in ('pandas', 'networkx', 'simpy', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_a_collective_on_64_hosts_loads_no_pandas_networkx_plotly_or_numba() -> None:
    """``dessim collective`` on the 64-host preset, at flow level (the table) and analytically (--json), in one
    process: the builder's cables go to the fabric without networkx and no link table is made, so neither
    pandas, networkx nor plotly is imported; no solve is large enough to load numba (issue 18 item 5)."""
    import subprocess
    import sys

    code = ("import sys\nfrom simulator.cli import main\n"
            "for extra in (['--fidelity', 'flow'], ['--fidelity', 'analytical', '--json']):\n"
            "    try:\n        main(['collective', '--topology', 'torus-4x4x4', *extra])\n"
            "    except SystemExit as done:\n        assert done.code == 0, done.code\n"
            "print(sorted(m for m in ('pandas', 'networkx', 'plotly', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.strip().splitlines()
    assert "64 ranks" in done.stdout and '"ranks": 64' in lines[-2] and lines[-1] == "[]"


def test_a_64_host_training_step_at_flow_level_loads_no_numba() -> None:
    """The 64-host DLRM ps step makes a few solves of up to 24,000 flow entries (7 at the default batch): it keeps
    them in numpy (``maxmin.SolverTier``) rather than pay numba's 0.4 s load."""
    import subprocess
    import sys

    code = ("import sys\nfrom simulator.cli import main\ntry:\n"
            "    main(['run', '--strategy', 'ps', '--topology', 'fattree:k=8,pods=4,link_gbps=400,latency_us=1',"
            " '--fidelity', 'flow', '--json'])\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
            "print('numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert '"step_time_s"' in done.stdout and done.stdout.strip().splitlines()[-1] == "False"
