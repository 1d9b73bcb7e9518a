"""Running a scenario: the run specification (spec), one training step (training), one collective
(collective), closed forms over arrays (closed_form), sweeps (sweep) and jobs sharing a cluster (jobs)."""
