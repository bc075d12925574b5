"""Images: loaders for real CT and radiographs, DRRs from CT volumes, vertebral patches."""

from fracrisk.imaging.cache import DRRCache, drr_cache_key
from fracrisk.imaging.drr import (
    MU_WATER_PER_MM,
    VIEWS,
    hu_to_attenuation,
    project_points,
    render_drr,
    view_geometry,
)
from fracrisk.imaging.io import (
    CANONICAL_AXCODES,
    CTVolume,
    ImageReadError,
    Radiograph,
    load_ct,
    load_images,
    load_radiograph,
)
from fracrisk.imaging.patches import TRANSFORMS, map_points, patch_transform, vertebral_patches

__all__ = [
    "CANONICAL_AXCODES",
    "CTVolume",
    "DRRCache",
    "ImageReadError",
    "MU_WATER_PER_MM",
    "Radiograph",
    "TRANSFORMS",
    "VIEWS",
    "drr_cache_key",
    "hu_to_attenuation",
    "load_ct",
    "load_images",
    "load_radiograph",
    "map_points",
    "patch_transform",
    "project_points",
    "render_drr",
    "vertebral_patches",
    "view_geometry",
]
