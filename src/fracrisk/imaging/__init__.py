"""Images: loaders, DRRs from CT volumes, spine keypoint detection and vertebral patches."""

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
from fracrisk.imaging.keypoints import (
    KeypointNet,
    detect_keypoints,
    keypoint_errors_mm,
    load_keypoint_detector,
    save_keypoint_detector,
    train_keypoint_detector,
    vertebrae_found,
)
from fracrisk.imaging.patches import TRANSFORMS, map_points, patch_transform, vertebral_patches

__all__ = [
    "CANONICAL_AXCODES",
    "CTVolume",
    "DRRCache",
    "ImageReadError",
    "KeypointNet",
    "MU_WATER_PER_MM",
    "Radiograph",
    "TRANSFORMS",
    "VIEWS",
    "detect_keypoints",
    "drr_cache_key",
    "hu_to_attenuation",
    "keypoint_errors_mm",
    "load_ct",
    "load_images",
    "load_keypoint_detector",
    "load_radiograph",
    "map_points",
    "patch_transform",
    "project_points",
    "render_drr",
    "save_keypoint_detector",
    "train_keypoint_detector",
    "vertebrae_found",
    "vertebral_patches",
    "view_geometry",
]
