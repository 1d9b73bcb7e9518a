"""The README's PS-vs-DES caption and table state what the headline figure's data give: docs/headline.py's
closed-form sweeps are rerun at the points each claim needs, and every stated number must hold within 10%."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from workloads import load_workload

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
_spec = importlib.util.spec_from_file_location("headline", ROOT / "docs" / "headline.py")
headline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(headline)
NUMBER = r"\d[\d,]*(?:\.\d+)?"


def number(text: str) -> float:
    return float(text.replace(",", ""))


def table() -> dict[str, list[str]]:
    """The README's PS-vs-DES table: each row's workload (its first code span) -> its cells."""
    section = README.split("## PS or DES", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    return {row[0].split("`")[1]: row for row in rows}


ROWS = table()
CROSSOVERS = [case for case in headline.CASES if case != headline.MAIN]


def test_the_table_has_a_row_per_case_of_the_figure() -> None:
    assert list(ROWS) == list(headline.CASES)


@pytest.mark.parametrize("case", list(headline.CASES))
def test_the_tables_ids_dim_and_partial_width_are_the_workloads(case: str) -> None:
    """'IDs x dim' (per sample) is the workload's, 'r' DES's partial width in the figure's data."""
    keys = headline.CASES[case]
    workload = load_workload(keys["workload"], [f"{k.split('.', 1)[1]}={v}" for k, v in keys.items()
                                                if k.startswith("workload.")])
    ids, dim = map(number, re.fullmatch(rf"({NUMBER}) x ({NUMBER})", ROWS[case][1]).groups())
    assert (workload.ids_per_sample, {t.dim for t in workload.tables}) == (ids, {dim})
    widths = headline.ratios(keys, workers=(16,)).partial_width
    assert list(widths) == [number(re.match(NUMBER, ROWS[case][2]).group())]


def test_the_caption_states_only_numbers_of_the_table() -> None:
    """Besides the ratio's threshold, 1, every number of the caption is one the next tests check."""
    caption = re.search(r"!\[(.*?)\]\(docs/img/ps_vs_des\.png\)", README).group(1)
    stated = {1.0} | {number(n) for n in re.findall(NUMBER, " ".join(cell for row in ROWS.values() for cell in row))}
    assert {number(n) for n in re.findall(NUMBER, caption)} <= stated


def test_ps_beats_des_on_the_main_job_at_every_worker_count_by_the_stated_factors() -> None:
    """'never: PS is 2.2x faster at 2 workers, 17x at 16, 1,150x at 1,024', and the set-up section's
    'PS wins it, 17x (5.8 ms a step against 101.5 ms)' (the main job runs 16 workers)."""
    frame = headline.ratios(headline.CASES[headline.MAIN]).set_index("workers")
    assert list(frame.index) == list(headline.WORKERS) and (frame.ps_over_des < 1).all()
    claims = {int(number(n)): number(x) for x, n in re.findall(rf"({NUMBER})x(?: faster)? at ({NUMBER})",
                                                                 ROWS[headline.MAIN][-1])}
    assert {min(headline.WORKERS), 16, max(headline.WORKERS)} <= set(claims)
    for workers, factor in claims.items():
        assert 1 / frame.ps_over_des[workers] == pytest.approx(factor, rel=0.1)
    factor, ps_ms, des_ms = map(float, re.search(rf"PS wins it, ({NUMBER})x \(({NUMBER}) ms a step against "
                                                 rf"({NUMBER}) ms\)", README).groups())
    assert 1 / frame.ps_over_des[16] == pytest.approx(factor, rel=0.1)
    assert (frame.step_time_s_ps[16] * 1e3, frame.step_time_s_des[16] * 1e3) == pytest.approx((ps_ms, des_ms),
                                                                                               rel=0.01)


@pytest.mark.parametrize("case", CROSSOVERS)
def test_des_is_faster_below_the_stated_worker_count_and_ps_above(case: str) -> None:
    """The figure's crossover (interpolated between its worker counts) is the stated one within 10%, and the
    fabric of 4 hosts per leaf shows it: DES faster at the last multiple of 4 below 0.9x, PS from 1.1x up."""
    stated = number(re.fullmatch(rf"({NUMBER}) workers", ROWS[case][-1]).group(1))
    assert headline.crossover(headline.ratios(headline.CASES[case])) == pytest.approx(stated, rel=0.1)
    below, above = 4 * math.floor(0.9 * stated / 4), 4 * math.ceil(1.1 * stated / 4)
    frame = headline.ratios(headline.CASES[case], workers=(below, above)).set_index("workers")
    assert frame.ps_over_des[below] > 1 > frame.ps_over_des[above]
