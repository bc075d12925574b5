"""Names of the lumbar anatomy that fracrisk's spine images use, defined once.

The keypoint detector, the patch cutter, the image dataset and the simulator all refer to
the vertebral levels L1..L5 and to the four corners of each vertebral body, in the same
order; they take the names and counts from here.

Corner order
------------
``AS`` anterior-superior, ``PS`` posterior-superior, ``PI`` posterior-inferior, ``AI``
anterior-inferior: once round the body's outline in its own frame. Keypoint arrays are
``(5, 4, 2)`` (level, corner, ``(x = col, y = row)`` pixels) or, flattened, ``(20, 2)`` in
level-major order (L1 AS, L1 PS, ..., L5 AI).

Examples
--------
>>> VERTEBRAE
('L1', 'L2', 'L3', 'L4', 'L5')
>>> N_KEYPOINTS, keypoint_names()[:3]
(20, ['L1_AS', 'L1_PS', 'L1_PI'])
"""

from __future__ import annotations

__all__ = [
    "CORNER_NAMES",
    "KEYPOINT_LAYOUT",
    "N_KEYPOINTS",
    "VERTEBRAE",
    "VERTEBRA_CORNERS",
    "keypoint_names",
]

#: The lumbar levels, superior to inferior; images, patches and keypoints follow this order.
VERTEBRAE: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")

#: The corners of a vertebral body, in keypoint order.
VERTEBRA_CORNERS: tuple[str, ...] = ("AS", "PS", "PI", "AI")

#: Each corner's abbreviation and full name.
CORNER_NAMES: dict[str, str] = {
    "AS": "anterior-superior",
    "PS": "posterior-superior",
    "PI": "posterior-inferior",
    "AI": "anterior-inferior",
}

#: Number of keypoints on a lateral lumbar radiograph: 4 corners of each of L1..L5.
N_KEYPOINTS: int = len(VERTEBRAE) * len(VERTEBRA_CORNERS)

#: The keypoint layout in words, as the detector's saved config records it.
KEYPOINT_LAYOUT: str = (
    f"(x = col, y = row) pixels; {VERTEBRAE[0]}..{VERTEBRAE[-1]} x ({', '.join(VERTEBRA_CORNERS)})"
)


def keypoint_names() -> list[str]:
    """The 20 keypoints' names in flattened order: ``L1_AS``, ``L1_PS``, ..., ``L5_AI``.

    Returns
    -------
    list of str
        ``f"{level}_{corner}"`` for every level of :data:`VERTEBRAE` and corner of
        :data:`VERTEBRA_CORNERS`, level-major.
    """
    return [f"{level}_{corner}" for level in VERTEBRAE for corner in VERTEBRA_CORNERS]
