"""Image formation: digitally reconstructed radiographs from CT volumes."""

from fracrisk.imaging.drr import (
    MU_WATER_PER_MM,
    VIEWS,
    hu_to_attenuation,
    project_points,
    render_drr,
    view_geometry,
)

__all__ = [
    "MU_WATER_PER_MM",
    "VIEWS",
    "hu_to_attenuation",
    "project_points",
    "render_drr",
    "view_geometry",
]
