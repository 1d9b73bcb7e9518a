"""workloads.spec / models / load: derived sizes computed here by hand, presets, inline strings, overrides,
and one-line SpecErrors for bad input."""

import itertools
import json

import pytest
from pydantic import ValidationError

from simulator.errors import SpecError
from workloads import (
    MLPERF_CRITEO_TB_ROWS,
    MODELS,
    Table,
    Workload,
    apply_overrides,
    list_presets,
    load_workload,
    params_per_id_for,
)

REQUIRED_PRESETS = ["dlrm-criteo-tb", "dlrm-small", "lr-criteo", "fm-criteo", "widedeep-criteo", "deepfm-criteo",
                    "dnn-criteo", "dcn-criteo"]


def mlp_params(widths: list[int]) -> int:
    return sum(i * o + o for i, o in itertools.pairwise(widths))


def small(model: str, interaction: str, dims: tuple[int, int] = (4, 4), **kw: object) -> Workload:
    """Two tables: t0 shared by 2 fields (hotness 3), t1 one field; F = 3."""
    tables = [Table(name="t0", rows=100, dim=dims[0], params_per_id=params_per_id_for(model, dims[0]), fields=2,
                    hotness=3),
              Table(name="t1", rows=50, dim=dims[1], params_per_id=params_per_id_for(model, dims[1]))]
    return Workload(name="w", model=model, tables=tables, interaction=interaction, batch_per_worker=8, **kw)


@pytest.mark.parametrize(("model", "interaction", "dims", "r"), [
    ("lr", "none", (1, 1), 1),            # LR: 1
    ("fm", "fm", (4, 4), 4 + 1),          # FM: k + 1
    ("dnn", "concat", (4, 8), 2 * 4 + 8),  # DNN: F*k (sum over tables of fields * dim)
    ("widedeep", "concat", (4, 4), 3 * 4 + 1),
    ("deepfm", "fm", (4, 4), 3 * 4 + 1),
    ("dlrm", "dot", (4, 4), 3 * 4),
    ("dcn", "cross", (4, 8), 2 * 4 + 8),
])
def test_partial_width_follows_training_md(model: str, interaction: str, dims: tuple[int, int], r: int) -> None:
    wl = small(model, interaction, dims)
    assert wl.partial_width == r
    assert wl.n_fields == 3 and wl.ids_per_sample == 2 * 3 + 1 == wl.embedding_lookups_per_sample


def test_sparse_sizes_and_params_per_id() -> None:
    wl = small("fm", "fm", dtype_bytes=2)
    assert [t.params_per_id for t in wl.tables] == [5, 5]
    assert wl.sparse_params == 100 * 5 + 50 * 5 and wl.sparse_bytes == 2 * 750
    assert [params_per_id_for(m, 8) for m in ("lr", "fm", "widedeep", "deepfm", "dnn", "dlrm", "dcn")] == \
        [1, 9, 9, 9, 8, 8, 8]


def test_tiny_dlrm_dense_params_and_flops_by_hand() -> None:
    """Bottom 3-5-4; three dim-4 pooled vectors (t0 has 2 fields) + the dense one: V = 4, 6 pairs + 4 inputs."""
    wl = small("dlrm", "dot", dense_features=3, bottom_mlp=[5, 4], top_mlp=[6, 1])
    assert wl.n_vectors == 4 and wl.interaction_width == 6 + 4
    bottom = (3 * 5 + 5) + (5 * 4 + 4)
    top = (10 * 6 + 6) + (6 * 1 + 1)  # ends in 1: no extra output layer
    assert wl.dense_params == bottom + top == 44 + 73
    assert wl.dense_flops_per_sample == 2 * (3 * 5 + 5 * 4 + 10 * 6 + 6 * 1) + 2 * 4 * 4 * 4
    widths = 3 * 4 + 10 + (5 + 4 + 6 + 1)  # pooled vectors, interaction output, layer outputs
    assert wl.activation_bytes_per_sample == widths * 4 * 2


def test_other_dense_conventions_by_hand() -> None:
    assert small("lr", "none", (1, 1)).dense_params == 1  # the bias
    assert small("lr", "none", (1, 1), dense_features=13).dense_params == 14
    fm = small("fm", "fm")
    assert fm.dense_params == 1 and fm.dense_flops_per_sample == 3 * 3 * 4
    deepfm = small("deepfm", "fm", top_mlp=[8])
    assert deepfm.dense_params == 1 + (12 * 8 + 8) + (8 + 1)  # bias, deep tower on E = 12, output layer
    wd = small("widedeep", "concat", dense_features=2, top_mlp=[8])
    assert wd.dense_params == (2 + 1) + (14 * 8 + 8) + (8 + 1)  # linear term, deep on E + 2, output
    dnn_sum = small("dnn", "sum", dense_features=4, top_mlp=[8])
    assert dnn_sum.interaction_width == 4 and dnn_sum.dense_params == (4 * 8 + 8) + (8 + 1)
    dcn = small("dcn", "cross", dense_features=3, cross_layers=2, top_mlp=[5])
    d = 12 + 3
    assert dcn.dense_params == 2 * 2 * d + (d * 5 + 5) + ((d + 5) + 1)
    assert dcn.dense_flops_per_sample == 2 * (d * 5 + (d + 5)) + 4 * d * 2


def test_mlperf_dlrm_preset() -> None:
    wl = load_workload("dlrm-criteo-tb")
    assert [t.rows for t in wl.tables] == list(MLPERF_CRITEO_TB_ROWS) and max(MLPERF_CRITEO_TB_ROWS) < 40_000_000
    assert sum(MLPERF_CRITEO_TB_ROWS) == 187_767_399
    assert wl.interaction_width == 27 * 26 // 2 + 128 == 479  # the reference's ln_top[0]
    assert wl.dense_params == mlp_params([13, 512, 256, 128]) + mlp_params([479, 1024, 1024, 512, 256, 1])
    assert wl.partial_width == 26 * 128 and wl.sparse_bytes == 187_767_399 * 128 * 4


@pytest.mark.parametrize(("optimizer", "slots"), [("sgd", 0), ("adagrad", 1), ("adam", 2)])
def test_optimizer_slots(optimizer: str, slots: int) -> None:
    assert load_workload("dlrm-small", [f"optimizer={optimizer}"]).optimizer_slots == slots


def test_every_preset_and_builder_loads() -> None:
    assert set(REQUIRED_PRESETS) <= set(list_presets())
    for name in list_presets():
        wl = load_workload(name)
        assert wl.name == name
        assert wl.fc_params > 0 if wl.model == "classification" else wl.partial_width > 0 and wl.dense_params >= 1
    for name in MODELS:
        assert load_workload(name).model == name
    small_dlrm = load_workload("dlrm-small")
    assert [t.name for t in small_dlrm.tables] == [f"t{i}" for i in range(8)]
    assert {(t.rows, t.dim) for t in small_dlrm.tables} == {(100_000, 64)}


def test_inline_strings() -> None:
    wl = load_workload("dlrm:batch=2048,dim=64")
    assert wl.batch_per_worker == 2048 and {t.dim for t in wl.tables} == {64}
    assert {t.params_per_id for t in wl.tables} == {64} and wl.bottom_mlp == [512, 256, 64]
    dnn = load_workload("dnn:top_mlp=[512,256],vocab=2e6,tables.t3.hotness=5")
    assert dnn.top_mlp == [512, 256] and {t.rows for t in dnn.tables} == {2_000_000}
    assert dnn.tables[3].hotness == 5 and dnn.tables[2].hotness == 1
    assert load_workload("lr:n_tables=3,alpha=1.5,popularity=zipf").tables[2].zipf_alpha == 1.5
    with pytest.raises(SpecError, match="given more than once"):
        load_workload("dnn:rows=1e6,vocab=2e6")


def test_overrides() -> None:
    base = load_workload("dlrm-small")
    wl = apply_overrides(base, ["batch=1024", "dim=32", "tables.t0.rows=10", "vocab=5000", "tables.t1.vocab=7",
                                "alpha=1.3", "popularity=zipf", "fields=2", "hotness=4"])
    assert wl.batch_per_worker == 1024 and wl.bottom_mlp == [128, 32]
    assert [t.rows for t in wl.tables[:3]] == [5000, 7, 5000]  # in order: the later table-wide vocab wins on t0
    assert {(t.dim, t.params_per_id, t.fields, t.hotness, t.popularity, t.zipf_alpha) for t in wl.tables} == \
        {(32, 32, 2, 4, "zipf", 1.3)}
    assert wl.n_fields == 16 and len(wl.tables) == 8  # fields= sets fields per table; the table count stays
    fm = load_workload("fm-criteo", ["dim=8", "batch_per_worker=16"])
    assert {t.params_per_id for t in fm.tables} == {9} and fm.partial_width == 9
    assert base.batch_per_worker == 512  # the original is unchanged


def test_files(tmp_path) -> None:
    builder = tmp_path / "mine.yaml"
    builder.write_text("description: x\nbuilder: dnn\nparams: {n_tables: 2, rows: 1e9, batch: 64}\n")
    wl = load_workload(str(builder), ["hotness=2"])
    assert wl.name == "mine" and wl.tables[0].rows == 10**9 and wl.batch_per_worker == 64
    full = load_workload("dlrm-small").model_dump()
    (tmp_path / "full.json").write_text(json.dumps(full))
    assert load_workload(str(tmp_path / "full.json")) == load_workload("dlrm-small")


@pytest.mark.parametrize(("spec", "overrides", "needles"), [
    ("gpt5", [], ["workload: got 'gpt5'", "dlrm-criteo-tb", "dlrm"]),
    ("transformer:batch=8", [], ["workload: got 'transformer'"]),
    ("dlrm-small", ["batch=-3"], ["batch_per_worker: got -3", ">= 1"]),
    ("dlrm-small", ["batch_per_worker=-3"], ["batch_per_worker: got -3", ">= 1"]),
    ("dlrm:batch=-3", [], ["dlrm.batch_per_worker: got -3", ">= 1"]),
    ("dlrm-small", ["dim=0"], ["dim: got 0", ">= 1"]),
    ("dlrm:dim=0", [], ["dlrm.dim: got 0"]),
    ("dlrm-small", ["zipf_alpha=0"], ["zipf_alpha: got 0", "> 0"]),
    ("dlrm-small", ["alpha=-1.5"], ["zipf_alpha: got -1.5", "> 0"]),
    ("dlrm-small", ["tables.t0.replacement=false", "tables.t0.rows=4", "tables.t0.hotness=8"],
     ["tables.t0.hotness: got 8", "rows (4)"]),
    ("dlrm-small", ["colour=blue"], ["set: got 'colour=blue'", "allowed keys"]),
    ("dlrm-small", ["tables.t99.rows=5"], ["set: got 'tables.t99.rows=5'", "t0"]),
    ("dlrm-small", ["batch"], ["set: got 'batch'"]),
    ("dlrm-small", ["optimizer=lbfgs"], ["optimizer: got 'lbfgs'", "adam"]),
    ("dlrm-small", ["tables.t0.dim=32"], ["tables.t0.dim: got 32", "64"]),
    ("dlrm-small", ["model=lr"], ["interaction: got 'dot'", "none"]),
    ("lr-criteo", ["dim=8"], ["tables.t0.dim: got 8", "1 for lr"]),
    ("dlrm-small", ["rows=2.5"], ["tables.t0.rows: got 2.5", "integer"]),
    ("dlrm-small", ["hotness=true"], ["tables.t0.hotness: got True"]),
    ("dlrm-small", ["dtype_bytes=3"], ["dtype_bytes: got 3"]),
    ("dlrm:rows=[1,2],n_tables=3", [], ["dlrm.n_tables: got 3"]),
    ("dlrm:colour=1", [], ["workload: got 'colour=1'"]),
    ("no/such/file.yaml", [], ["workload: got 'no/such/file.yaml'", "not found"]),
])
def test_bad_input_is_one_spec_error_line(spec: str, overrides: list[str], needles: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        load_workload(spec, overrides)
    text = str(err.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text


def test_bad_yaml_files(tmp_path) -> None:
    cases = {"a.yaml": "builder: dlrm\nparams: {dim: 0}\n", "b.yaml": "builder: dlrm\nextra: 1\n",
             "c.yaml": "- just a list\n", "d.yaml": "name: x\nmodel: dlrm\n", "e.json": "{not json"}
    for name, content in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(SpecError) as err:
            load_workload(str(tmp_path / name))
        assert "\n" not in str(err.value)


def test_direct_construction_validates() -> None:
    with pytest.raises(ValidationError, match="hotness"):
        Table(name="t", rows=4, dim=2, params_per_id=2, hotness=8, replacement=False)
    with pytest.raises(ValidationError):
        Workload(name="w", model="dlrm", tables=[], interaction="dot", batch_per_worker=1)
