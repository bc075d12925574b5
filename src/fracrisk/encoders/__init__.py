"""Image encoders (multi-view DRR, vertebral patches, CT volume) and their fusion with covariates.

Every encoder has one interface (``num_features``, ``forward`` to an embedding of shape
(batch, num_features), ``forward_features`` to one embedding per view or vertebra) and is
built by name with :func:`create_encoder`. Backbones are timm networks, always randomly
initialised (``pretrained=False``): nothing is downloaded at run time.
"""

from fracrisk.encoders._registry import create_encoder, list_encoders, register_encoder
from fracrisk.encoders.backbones import DEFAULT_BACKBONE, ImageBackbone, create_backbone
from fracrisk.encoders.fusion import FusionSurvivalNet
from fracrisk.encoders.multiview import DRR_VIEWS, MultiViewDRREncoder
from fracrisk.encoders.vertebral import LUMBAR_LEVELS, VertebralPatchEncoder
from fracrisk.encoders.volume import VolumeCTEncoder

__all__ = [
    "DEFAULT_BACKBONE",
    "DRR_VIEWS",
    "LUMBAR_LEVELS",
    "FusionSurvivalNet",
    "ImageBackbone",
    "MultiViewDRREncoder",
    "VertebralPatchEncoder",
    "VolumeCTEncoder",
    "create_backbone",
    "create_encoder",
    "list_encoders",
    "register_encoder",
]
