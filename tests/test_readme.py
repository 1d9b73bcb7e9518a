"""The README's command lines paste and run as written: every ``dessim`` command of its ```bash blocks runs
in process, in a scratch folder, and exits 0; the few that run for minutes or need the torch extra (or a file
such a command writes) are parsed by the command line instead, and the repository files they name exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from simulator.cli import app, main

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("dessim", ".venv/bin/dessim")
#: Parsed, not run: a README command containing the key, and why.
PARSE_ONLY = {
    "calibrate": "the real executor (torch), minutes",
    "validate": "the real executor (torch), minutes",
    "sweep": "240 flow-level runs, minutes",
    "--calibration": "reads the profile a GPU calibration writes",
    "--ps-mode async": "8 asynchronous steps, seconds",
}


def readme_lines() -> list[list[list[str]]]:
    """Each command line of README.md's ```bash blocks that runs ``dessim``: its ``&&``-chained commands, as
    argument lists without the program (continuations joined, comments dropped, other programs left out)."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            chain: list[list[str]] = [[]]
            for token in tokens:
                chain.append([]) if token == "&&" else chain[-1].append(token)
            commands = [command[1:] for command in chain if command and command[0] in PROGRAMS]
            if commands:
                lines.append(commands)
    return lines


LINES = readme_lines()


def test_the_readme_has_its_commands_and_each_exception_still_names_one() -> None:
    joined = [" ".join(command) for line in LINES for command in line]
    assert len(joined) >= 30 and "compare" in joined
    assert all(any(key in command for command in joined) for key in PARSE_ONLY)


def parse(args: list[str]) -> None:
    """Parse ``args`` as ``dessim`` would (its command and options, types and choices), without running it."""
    group = typer.main.get_command(app)
    context = typer.Context(group, info_name="dessim")
    command = group.get_command(context, args[0])
    assert command is not None, f"no command {args[0]}"
    command.make_context(args[0], list(args[1:]), parent=context)


@pytest.mark.parametrize("line", LINES, ids=[" && ".join(" ".join(c) for c in line)[:70] for line in LINES])
def test_each_readme_command_runs_as_written(line: list[list[str]], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "docs").symlink_to(ROOT / "docs")  # commands name files of the repository, and write beside them
    monkeypatch.chdir(tmp_path)
    for args in line:
        text = " ".join(args)
        if any(key in text for key in PARSE_ONLY):
            parse(args)
            assert all((ROOT / arg).exists() for arg in args if arg.startswith("docs/")), text
            continue
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0, f"dessim {text}: {capsys.readouterr().err}"
