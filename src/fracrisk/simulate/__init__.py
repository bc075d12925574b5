"""Ground-truth cohort simulation (clinical part; imaging comes with the full simulator)."""

from fracrisk.simulate.clinical import clinical_cohort, draw_patients, fracture_log_relative_hazard

__all__ = ["clinical_cohort", "draw_patients", "fracture_log_relative_hazard"]
