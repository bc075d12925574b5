"""Ground-truth cohort simulation: clinical risk factors, hidden bone quality, images.

The simulator is a user of the library (data, imaging), never a dependency of it:
no module of ``fracrisk.imaging``, ``fracrisk.data``, the encoders, models, metrics or
baselines imports it (``tests/test_layering.py``). The keypoint detector's simulated
training set lives here (:func:`simulate_training_set`) for that reason.
"""

from fracrisk.simulate.clinical import (
    clinical_cohort,
    draw_patients,
    follow_up,
    fracture_log_relative_hazard,
)
from fracrisk.simulate.cohort import PRESETS, Preset, cohort, draw_hidden_determinants
from fracrisk.simulate.keypoint_training import simulate_training_set, training_radiograph
from fracrisk.simulate.truth import with_labels

__all__ = [
    "PRESETS",
    "Preset",
    "clinical_cohort",
    "cohort",
    "draw_hidden_determinants",
    "draw_patients",
    "follow_up",
    "fracture_log_relative_hazard",
    "simulate_training_set",
    "training_radiograph",
    "with_labels",
]
