"""Ground-truth cohort simulation: clinical risk factors, hidden bone quality, images."""

from fracrisk.simulate.clinical import (
    clinical_cohort,
    draw_patients,
    follow_up,
    fracture_log_relative_hazard,
)
from fracrisk.simulate.cohort import PRESETS, Preset, cohort, draw_hidden_determinants

__all__ = [
    "PRESETS",
    "Preset",
    "clinical_cohort",
    "cohort",
    "draw_hidden_determinants",
    "draw_patients",
    "follow_up",
    "fracture_log_relative_hazard",
]
