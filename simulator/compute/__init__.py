"""Compute cost models: device presets and the roofline cost of compute ops (roofline), and processor sharing
of ranks that share one machine's cores (cpu_sharing)."""
