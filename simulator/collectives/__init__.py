"""Collectives: algorithms lowered to point-to-point schedules (algorithms), and the choice among them at a size
(tuner), priced by the analytical network model."""
