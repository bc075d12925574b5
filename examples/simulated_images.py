"""A montage of simulated patients: hip CT slices, their DRRs, and lateral spine radiographs
with the ground-truth keypoints, at low and at high BMD.

Run with ``.venv/bin/python examples/simulated_images.py [--out simulated_images.png]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from fracrisk.imaging import render_drr
from fracrisk.simulate.hip_ct import hip_ct_volume
from fracrisk.simulate.spine import lateral_radiograph, spine_volume

PATIENTS = [  # (label, femoral-neck BMD g/cm2, latent quality z, Genant grades L1-L5, types)
    (
        "low BMD 0.55, z -2, L1 wedge 3, L3 biconcave 2",
        0.55,
        -2.0,
        [3, 0, 2, 0, 0],
        ["wedge", "none", "biconcave", "none", "none"],
    ),
    ("high BMD 1.05, z +2, no fracture", 1.05, 2.0, [0] * 5, ["none"] * 5),
]


def make_montage(path: str = "simulated_images.png", seed: int = 0) -> str:
    """Draw the montage and save it as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(PATIENTS), 6, figsize=(20, 3.6 * len(PATIENTS)))
    for row, (label, bmd, z, grades, kinds) in enumerate(PATIENTS):
        rng = np.random.default_rng([seed, row])
        ct = hip_ct_volume(
            femoral_neck_bmd=bmd,
            z=z,
            bmi=26.0,
            sex="F",
            hip_axis_length=104.0,
            neck_shaft_angle=129.0,
            rng=rng,
        )
        heads = ct.landmarks["head_right"]
        coronal = ct.volume_hu[:, int(round(heads[1])), :]
        axial = ct.volume_hu[int(round(heads[0])), :, :]
        axes[row, 0].imshow(coronal, cmap="gray", vmin=-250, vmax=1250, origin="lower")
        axes[row, 0].set_title("hip CT, coronal slice")
        axes[row, 1].imshow(axial, cmap="gray", vmin=-250, vmax=1250, origin="lower")
        axes[row, 1].set_title("hip CT, axial slice")
        drr = render_drr(ct.volume_hu, ct.spacing, views=("frontal", "lateral")).numpy()
        for k, view in enumerate(("frontal", "lateral")):
            axes[row, 2 + k].imshow(drr[k], cmap="gray")
            axes[row, 2 + k].set_title(f"DRR, {view}")
        spine = spine_volume(
            femoral_neck_bmd=bmd,
            z=z,
            genant_grades=grades,
            deformity_types=kinds,
            bmi=26.0,
            sex="F",
            rng=rng,
        )
        xray = lateral_radiograph(spine)
        axes[row, 4].imshow(xray.image, cmap="gray")
        points = xray.keypoints.reshape(-1, 2)
        axes[row, 4].plot(points[:, 0], points[:, 1], "r.", markersize=4)
        axes[row, 4].set_title("lateral spine radiograph + keypoints")
        middle = spine.volume_hu.shape[2] // 2
        axes[row, 5].imshow(
            spine.volume_hu[:, :, middle], cmap="gray", vmin=-250, vmax=1250, origin="lower"
        )
        axes[row, 5].set_title("spine volume, midsagittal")
        axes[row, 0].set_ylabel(label, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="simulated_images.png")
    print("saved", make_montage(parser.parse_args().out))
