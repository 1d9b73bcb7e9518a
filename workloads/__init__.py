"""Workload builders (LR, FM, Wide&Deep, DeepFM, DLRM, DCN, extreme classification) and YAML presets.

Empty until the training-step issue; it exists now so the package layout of ARCHITECTURE.md is in place.
"""
