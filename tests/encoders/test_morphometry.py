"""Vertebral morphometry: each ratio measures the deformity it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.encoders.morphometry import RATIOS, VertebralMorphometry
from fracrisk.imaging import vertebral_patches
from fracrisk.simulate.spine import lateral_radiograph, spine_volume


def _column(heights_a, heights_p, depth=30.0):
    """Corners (AS, PS, PI, AI) of five upright bodies stacked with 8 px discs, anterior at +x."""
    corners, y = [], 0.0
    for h_a, h_p in zip(heights_a, heights_p, strict=True):
        bottom = y + max(h_a, h_p)
        corners.append([[depth, bottom - h_a], [0.0, bottom - h_p], [0.0, bottom], [depth, bottom]])
        y = bottom + 8.0
    return np.asarray(corners, dtype=np.float64)


def _flat_patches(n):
    """Patches with a bright body between two dark discs (margin 0.15, 40 x 40)."""
    patch = np.zeros((40, 40))
    patch[5:35] = 1.0
    return np.broadcast_to(patch, (n, 5, 40, 40)).copy()


def test_names_and_shape():
    m = VertebralMorphometry()
    assert m.feature_names_[:4] == [f"L1_{r}" for r in RATIOS]
    assert m.feature_names_[-1] == "n_deformed"
    corners = np.stack([_column([25] * 5, [25] * 5)] * 3)
    out = m.transform(corners, _flat_patches(3))
    assert out.shape == (3, len(m.feature_names_)) and np.isfinite(out).all()


def test_height_ratios_from_the_corners():
    m = VertebralMorphometry()
    names = m.feature_names_
    # L3 wedge (anterior 30% lower), L5 crush (both heights 30% lower).
    corners = _column([25, 25, 17.5, 25, 17.5], [25, 25, 25, 25, 17.5])[None]
    f = dict(zip(names, m.transform(corners, _flat_patches(1))[0], strict=True))
    assert f["L3_ha_hp"] == pytest.approx(0.7)
    assert f["L1_ha_hp"] == pytest.approx(1.0)
    assert f["L5_hp_neighbours"] == pytest.approx(0.7)  # L5's only neighbour is L4
    assert f["L3_hp_neighbours"] == pytest.approx(1.0)
    assert f["L4_hp_neighbours"] == pytest.approx(25 / ((25 + 17.5) / 2))
    assert f["L1_height_depth"] == pytest.approx(25 / 30)
    assert f["min_ha_hp"] == pytest.approx(0.7)
    assert f["n_deformed"] == 2  # L3 (wedge) and L5 (crush) below 0.80; hm_h is 1 here


def test_a_biconcave_body_lowers_the_middle_height_only():
    patches = _flat_patches(1)
    dipped = patches.copy()
    dipped[0, 1, 5:10, 17:23] = 0.0  # both endplates depressed in the middle of L2
    dipped[0, 1, 30:35, 17:23] = 0.0
    m = VertebralMorphometry()
    corners = _column([25] * 5, [25] * 5)[None]
    hm = m.feature_names_.index("L2_hm_h")
    plain, concave = m.transform(corners, patches)[0], m.transform(corners, dipped)[0]
    frame = 40 / 1.3  # the frame's height in pixels: the patch is the frame plus 2 x 0.15
    assert plain[hm] == pytest.approx(30 / frame)  # endplate to endplate: rows 5 to 34
    assert concave[hm] == pytest.approx(20 / frame)
    assert concave[m.feature_names_.index("n_deformed")] == 1
    assert concave[m.feature_names_.index("L2_ha_hp")] == pytest.approx(1.0)


def test_on_simulated_radiographs_deformities_are_counted_and_intact_spines_are_not():
    """The simulator's Genant deformities, measured on its radiographs at its exact corners."""
    rng = np.random.default_rng(0)
    cases = [([0] * 5, ["none"] * 5)] * 2 + [
        ([0, 2, 0, 0, 0], ["none", "wedge", "none", "none", "none"]),
        ([0, 0, 2, 0, 0], ["none", "none", "biconcave", "none", "none"]),
        ([0, 0, 0, 2, 0], ["none", "none", "none", "crush", "none"]),
    ]
    corners, patches = [], []
    for grades, kinds in cases:
        spine = spine_volume(
            femoral_neck_bmd=0.8,
            z=0.0,
            genant_grades=grades,
            deformity_types=kinds,
            bmi=26.0,
            sex="F",
            rng=rng,
        )
        radiograph = lateral_radiograph(spine)
        kp = np.asarray(radiograph.keypoints, dtype=np.float64)
        corners.append(kp)
        image = torch.as_tensor(radiograph.image)
        patches.append(vertebral_patches(image, kp, size=(64, 64)).reshape(5, 64, 64))
    m = VertebralMorphometry()
    f = m.transform(np.stack(corners), torch.stack(patches))
    n_deformed = f[:, m.feature_names_.index("n_deformed")]
    assert n_deformed.tolist() == [0, 0, 1, 1, 1]
    names = m.feature_names_
    assert f[2, names.index("L2_ha_hp")] < 0.75  # wedge: anterior height
    assert f[3, names.index("L3_hm_h")] < 0.80  # biconcave: middle height
    assert f[4, names.index("L4_hp_neighbours")] < 0.80  # crush: the whole body


def test_bad_input_is_refused_with_the_reason():
    m = VertebralMorphometry()
    with pytest.raises(ValueError, match=r"\(N, 5, 4, 2\)"):
        m.transform(np.zeros((2, 5, 4)), _flat_patches(2))
    with pytest.raises(ValueError, match="one per corner set"):
        m.transform(np.stack([_column([25] * 5, [25] * 5)] * 2), _flat_patches(3))
    corners = _column([25] * 5, [25] * 5)[None].copy()
    corners[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.transform(corners, _flat_patches(1))
    collapsed = _column([25] * 5, [25] * 5)[None].copy()
    collapsed[0, 2, 1] = collapsed[0, 2, 2]  # PS on PI: no posterior height
    with pytest.raises(ValueError, match="zero height"):
        m.transform(collapsed, _flat_patches(1))
    with pytest.raises(ValueError, match="threshold"):
        VertebralMorphometry(threshold=1.5)
    assert VertebralMorphometry.from_dict(m.to_dict()).feature_names_ == m.feature_names_
