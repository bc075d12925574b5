"""The cohort table's columns: names, roles, units and allowed ranges.

One row is one patient. The outcome is ``time`` (years from baseline to the first event or
censoring, > 0) and ``event`` (0 censored, 1 fracture, 2 death as a competing event). The
canonical clinical columns are FRAX's inputs (Kanis et al. 2008, Osteoporos Int 19:385).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BINARY_RISK_FACTORS",
    "CANONICAL_CLINICAL",
    "COLUMN_SPECS",
    "DEFAULT_IMAGE_COLUMNS",
    "EVENT_CODES",
    "HIP_CT_COLUMN",
    "SPINE_KEYPOINTS_COLUMN",
    "SPINE_PIXEL_SPACING_COLUMN",
    "SPINE_XRAY_COLUMN",
    "ColumnSpec",
]

#: Event codes: 0 censored, 1 fracture (the event of interest), 2 death (competing event).
EVENT_CODES: dict[int, str] = {0: "censored", 1: "fracture", 2: "death (competing)"}

# Image columns: what ``fracrisk simulate`` writes and, by default, what
# ImageCohortDataset and ``fracrisk prepare-images`` read.

#: Path of the hip CT (a NIfTI file or a DICOM series directory).
HIP_CT_COLUMN = "hip_ct_path"
#: Path of the lateral lumbar spine radiograph (PNG, TIFF or DICOM).
SPINE_XRAY_COLUMN = "spine_xray_path"
#: The radiograph's 20 vertebral-body corners: JSON text of the ``(5, 4, 2)`` ``(x = col,
#: y = row)`` pixel coordinates, L1..L5 x (AS, PS, PI, AI) (:mod:`fracrisk.imaging.anatomy`).
SPINE_KEYPOINTS_COLUMN = "spine_keypoints"
#: The radiograph's pixel size in mm.
SPINE_PIXEL_SPACING_COLUMN = "spine_pixel_spacing_mm"
#: The default image path column of each kind of image dataset.
DEFAULT_IMAGE_COLUMNS: dict[str, str] = {
    "drr": HIP_CT_COLUMN,
    "patches": SPINE_XRAY_COLUMN,
    "volume": HIP_CT_COLUMN,
}


@dataclass(frozen=True)
class ColumnSpec:
    """What a canonical column holds.

    Attributes
    ----------
    name : str
        Column name.
    kind : {"numeric", "binary", "category"}
        Numeric values, 0/1 flags, or one of ``categories``.
    unit : str
        Unit, for documentation and error messages.
    low, high : float or None
        Inclusive plausible range of a numeric column; values outside are rejected.
    categories : tuple of str
        Allowed codes of a categorical column.
    description : str
        One line for humans.
    """

    name: str
    kind: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()
    description: str = ""


BINARY_RISK_FACTORS: tuple[str, ...] = (
    "prior_fracture",
    "parental_hip_fracture",
    "current_smoking",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3_or_more_units",
)

_SPECS = [
    ColumnSpec("age", "numeric", "years", 0.0, 120.0, description="age at baseline"),
    ColumnSpec("sex", "category", categories=("F", "M"), description="F female, M male"),
    ColumnSpec("bmi", "numeric", "kg/m2", 10.0, 80.0, description="body-mass index"),
    *[
        ColumnSpec(name, "binary", "0/1", description=name.replace("_", " "))
        for name in BINARY_RISK_FACTORS
    ],
    ColumnSpec(
        "femoral_neck_bmd",
        "numeric",
        "g/cm2",
        0.1,
        2.0,
        description="femoral-neck areal BMD by DXA",
    ),
    ColumnSpec(
        "femoral_neck_t_score",
        "numeric",
        "SD",
        -7.0,
        5.0,
        description="femoral-neck T-score (NHANES III young-adult reference)",
    ),
]

#: Specification of every canonical column, by name.
COLUMN_SPECS: dict[str, ColumnSpec] = {spec.name: spec for spec in _SPECS}

#: The canonical clinical covariates (FRAX inputs), in their documented order.
CANONICAL_CLINICAL: tuple[str, ...] = tuple(spec.name for spec in _SPECS)
