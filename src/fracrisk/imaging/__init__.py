"""Images: digitally reconstructed radiographs from CT volumes and vertebral patches."""

from fracrisk.imaging.drr import (
    MU_WATER_PER_MM,
    VIEWS,
    hu_to_attenuation,
    project_points,
    render_drr,
    view_geometry,
)
from fracrisk.imaging.patches import TRANSFORMS, map_points, patch_transform, vertebral_patches

__all__ = [
    "MU_WATER_PER_MM",
    "TRANSFORMS",
    "VIEWS",
    "hu_to_attenuation",
    "map_points",
    "patch_transform",
    "project_points",
    "render_drr",
    "vertebral_patches",
    "view_geometry",
]
