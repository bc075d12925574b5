"""Cohort tables (schema, validation at the boundary, I/O, splits) and image datasets."""

from fracrisk.data.cohort import Cohort, MissingReport, as_cohort, read_table
from fracrisk.data.image_dataset import ImageCohortDataset, ImageFailure
from fracrisk.data.schema import (
    BINARY_RISK_FACTORS,
    CANONICAL_CLINICAL,
    COLUMN_SPECS,
    DEFAULT_IMAGE_COLUMNS,
    EVENT_CODES,
    HIP_CT_COLUMN,
    SPINE_KEYPOINTS_COLUMN,
    SPINE_PIXEL_SPACING_COLUMN,
    SPINE_XRAY_COLUMN,
    ColumnSpec,
)
from fracrisk.data.splits import SPLIT_METHODS, split_cohort

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
    "SPLIT_METHODS",
    "Cohort",
    "ColumnSpec",
    "ImageCohortDataset",
    "ImageFailure",
    "MissingReport",
    "as_cohort",
    "read_table",
    "split_cohort",
]
