"""Calibration: fitting the compute model to executor measurements (calibrate, stepfit) and validating the
simulator's predictions against held-out measured runs (validation)."""
