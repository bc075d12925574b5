"""Detected versus true vertebral corners on simulated lateral radiographs, and the L1-L5
patches cut from the detected corners.

Run with ``.venv/bin/python examples/spine_keypoints.py [--out spine_keypoints.png]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from fracrisk.imaging import (
    detect_keypoints,
    keypoint_errors_mm,
    load_keypoint_detector,
    vertebral_patches,
)
from fracrisk.simulate.spine import lateral_radiograph, spine_volume

PATIENTS = [  # (label, femoral-neck BMD g/cm2, z, Genant grades L1-L5, deformity types)
    ("no fracture", 0.85, 0.5, [0] * 5, ["none"] * 5),
    (
        "L1 wedge grade 3, L3 biconcave grade 2",
        0.6,
        -1.5,
        [3, 0, 2, 0, 0],
        ["wedge", "none", "biconcave", "none", "none"],
    ),
]


def make_figure(path: str = "spine_keypoints.png", seed: int = 0) -> str:
    """Draw radiographs with true (green) and detected (red) corners, and the patches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = load_keypoint_detector()  # the shipped weights
    fig, axes = plt.subplots(len(PATIENTS), 6, figsize=(14, 4.2 * len(PATIENTS)))
    for row, (label, bmd, z, grades, kinds) in enumerate(PATIENTS):
        rng = np.random.default_rng([seed, row])
        xray = lateral_radiograph(
            spine_volume(
                femoral_neck_bmd=bmd,
                z=z,
                genant_grades=grades,
                deformity_types=kinds,
                bmi=27.0,
                sex="F",
                rng=rng,
            )
        )
        detected = detect_keypoints(model, xray.image)
        error = keypoint_errors_mm(detected, xray.keypoints, xray.pixel_spacing).mean()
        axes[row, 0].imshow(xray.image, cmap="gray")
        for points, colour in ((xray.keypoints, "lime"), (detected, "red")):
            flat = points.reshape(-1, 2)
            axes[row, 0].plot(flat[:, 0], flat[:, 1], ".", color=colour, markersize=5)
        axes[row, 0].set_title(f"{label}\nmean corner error {error:.2f} mm", fontsize=9)
        patches = vertebral_patches(xray.image, detected).numpy()
        for k in range(5):
            axes[row, k + 1].imshow(patches[k, 0], cmap="gray")
            axes[row, k + 1].set_title(f"L{k + 1} (from detected corners)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="spine_keypoints.png")
    print("saved", make_figure(parser.parse_args().out))
