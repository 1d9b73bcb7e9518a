"""Workloads: table and model specs, model builders (LR, FM, Wide&Deep, DeepFM, DNN, DLRM, DCN, extreme
classification), YAML presets, loading with ``--set`` overrides, and the ID-popularity math of ``workloads.ids``."""

from workloads.classification import ClassificationWorkload, classification
from workloads.load import build, list_presets, load_file, load_workload, parse_inline
from workloads.models import MLPERF_CRITEO_TB_ROWS, MODELS, PARAMS, dcn, deepfm, dlrm, dnn, fm, lr, widedeep
from workloads.spec import Table, Workload, apply_overrides, params_per_id_for, validate_workload

__all__ = ["MLPERF_CRITEO_TB_ROWS", "MODELS", "PARAMS", "AnyWorkload", "ClassificationWorkload", "Table", "Workload",
           "apply_overrides", "build", "classification", "dcn", "deepfm", "dlrm", "dnn", "fm", "list_presets",
           "load_file", "load_workload", "lr", "params_per_id_for", "parse_inline", "validate_workload", "widedeep"]

#: What a strategy lowers: a recommender or an extreme-classification workload.
AnyWorkload = Workload | ClassificationWorkload
