"""Frontal, lateral and axial DRRs of one simulated hip CT in three geometries.

Rows: parallel beam; the default cone beam (SDD 1020 mm, SID 850 mm, magnification 1.2); a
close C-arm (SDD 400 mm, SID 220 mm) where anatomy near the source is visibly magnified more
than anatomy near the detector; and the default cone beam with the patient turned by 15
degrees (the augmentation ``angles`` gives). The last column overlays where
:func:`fracrisk.imaging.project_points` puts the two femoral-head centres in each geometry.

Run with ``.venv/bin/python examples/drr_geometry.py [--out drr_geometry.png]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from fracrisk.imaging import ConeBeam, project_points, render_drr
from fracrisk.simulate.hip_ct import hip_ct_volume

GEOMETRIES = [  # (label, geometry, rotation in degrees)
    ("parallel beam", "parallel", 0.0),
    ("cone beam, SDD 1020 / SID 850 mm", ConeBeam(), 0.0),
    (
        "cone beam, SDD 400 / SID 220 mm",
        ConeBeam(source_to_detector=400, source_to_isocentre=220),
        0.0,
    ),
    ("cone beam, patient turned 15 degrees", ConeBeam(), 15.0),
]
VIEWS = ("frontal", "lateral", "axial")


def make_figure(path: str = "drr_geometry.png", seed: int = 0) -> str:
    """Draw the figure and save it as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = hip_ct_volume(
        femoral_neck_bmd=0.8,
        z=0.0,
        bmi=26.0,
        sex="F",
        hip_axis_length=104.0,
        neck_shaft_angle=129.0,
        rng=np.random.default_rng(seed),
        shape=(128, 128, 128),
    )
    heads_mm = (
        np.stack([ct.landmarks["head_right"], ct.landmarks["head_left"]]) + 0.5
    ) * np.asarray(ct.spacing)
    size = (224, 224)
    fig, axes = plt.subplots(len(GEOMETRIES), len(VIEWS), figsize=(10, 3.4 * len(GEOMETRIES)))
    for row, (label, geometry, angle) in enumerate(GEOMETRIES):
        views = render_drr(
            ct.volume_hu, ct.spacing, VIEWS, size=size, geometry=geometry, angles=angle
        ).numpy()
        for col, view in enumerate(VIEWS):
            ax = axes[row, col]
            ax.imshow(views[col], cmap="gray", vmin=0, vmax=np.percentile(views, 99.5))
            xy = project_points(
                heads_mm,
                view,
                ct.volume_hu.shape,
                ct.spacing,
                size=size,
                angle=angle,
                geometry=geometry,
            )
            ax.plot(xy[:, 0], xy[:, 1], "+", color="tab:orange", markersize=10, mew=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(view)
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle("DRRs of a simulated hip CT (128³, 1 mm); + = femoral-head centres")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="drr_geometry.png")
    print(make_figure(parser.parse_args().out))
