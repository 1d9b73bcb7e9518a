"""Compute cost models: device presets and the roofline cost of compute ops (roofline), and processor sharing
of ranks that share one machine's cores (cpu_sharing). The presets' names are here, so that listing them (the
command line's help) loads no numpy."""

from pathlib import Path

PRESET_DIR = Path(__file__).parent / "presets"


def list_devices() -> list[str]:
    """Names of the device presets shipped in ``simulator/compute/presets``."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))
