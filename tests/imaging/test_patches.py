"""Vertebral patches: exact crops, homography corners, rectification, simulated spines, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fracrisk.imaging.patches import (
    TRANSFORMS,
    map_points,
    patch_transform,
    vertebral_patches,
)
from fracrisk.simulate.spine import lateral_radiograph, spine_volume

UNIT_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # AS, PS, PI, AI


def unit_square_in_patch(size, margin):
    """Patch pixel coordinates (x = col, y = row) of the body frame's unit-square corners."""
    h, w = size
    span = 1.0 + 2.0 * margin
    x = (UNIT_SQUARE[:, 0] + margin) * w / span - 0.5
    y = (UNIT_SQUARE[:, 1] + margin) * h / span - 0.5
    return np.stack([x, y], -1)


def random_convex_quads(rng, shape, *, centre=100.0, radius=40.0):
    """Convex quadrilaterals: 4 points on an ellipse at sorted random angles, either winding."""
    n = int(np.prod(shape))
    gaps = rng.uniform(0.35, 1.0, (n, 4))
    angles = np.cumsum(gaps / gaps.sum(1, keepdims=True) * 2 * np.pi, 1) + rng.uniform(
        0, 2 * np.pi, (n, 1)
    )
    flip = rng.random((n, 1)) < 0.5
    angles = np.where(flip, -angles, angles)
    ax = radius * rng.uniform(0.6, 1.4, (n, 1))
    ay = radius * rng.uniform(0.6, 1.4, (n, 1))
    pts = np.stack([centre + ax * np.cos(angles), centre + ay * np.sin(angles)], -1)
    return pts.reshape(*shape, 4, 2)


def rectangle_quad(c0, r0, c1, r1, *, anterior_right=False):
    """Corners (AS, PS, PI, AI) of the pixel block rows r0:r1, cols c0:c1 (its outer edges)."""
    left, right, top, bottom = c0 - 0.5, c1 - 0.5, r0 - 0.5, r1 - 0.5
    if anterior_right:
        return [[right, top], [left, top], [left, bottom], [right, bottom]]
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


# --------------------------------------------------------------------------- exact crops


@pytest.mark.parametrize("transform", ["affine", "homography"])
def test_axis_aligned_rectangle_with_zero_margin_crops_exactly(transform):
    rng = np.random.default_rng(0)
    image = rng.random((90, 120)).astype(np.float32)
    size = (16, 20)
    blocks = [(3, 5, 43, 37), (50, 10, 70, 26), (60, 40, 110, 88), (5, 50, 25, 66), (0, 0, 120, 90)]
    quads = [rectangle_quad(*b) for b in blocks]
    patches = vertebral_patches(image, quads, size=size, margin=0.0, transform=transform)
    assert patches.shape == (5, 1, *size)
    for v, (c0, r0, c1, r1) in enumerate(blocks):
        block = torch.from_numpy(image[r0:r1, c0:c1])[None, None]
        expected = F.interpolate(block, size=size, mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(patches[v], expected, atol=1e-5, rtol=0)

    # Same-size crops are the pixels themselves; anterior on the image's right mirrors them.
    blocks = [(10 * v, 3 * v, 10 * v + 20, 3 * v + 16) for v in range(5)]
    same = vertebral_patches(
        image, [rectangle_quad(*b) for b in blocks], size=size, margin=0.0, transform=transform
    )
    mirrored = vertebral_patches(
        image,
        [rectangle_quad(*b, anterior_right=True) for b in blocks],
        size=size,
        margin=0.0,
        transform=transform,
    )
    for v, (c0, r0, c1, r1) in enumerate(blocks):
        block = torch.from_numpy(image[r0:r1, c0:c1])
        # (float32 normalised grid coordinates: ~W * 1e-7 of a pixel)
        torch.testing.assert_close(same[v, 0], block, atol=1e-5, rtol=0)
        torch.testing.assert_close(mirrored[v, 0], block.flip(-1), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("margin", [0.0, 0.15, 0.4])
def test_homography_maps_unit_square_corners_onto_the_quadrilateral(margin):
    rng = np.random.default_rng(1)
    quads = random_convex_quads(rng, (3, 7))
    size = (48, 40)
    hom = patch_transform(quads, size, margin, transform="homography")
    assert hom.shape == (3, 7, 3, 3) and hom.dtype == torch.float64
    src = torch.from_numpy(unit_square_in_patch(size, margin))
    mapped = map_points(src.expand(3, 7, 4, 2), hom)
    np.testing.assert_allclose(mapped.numpy(), quads, atol=1e-5, rtol=0)
    # Projective property: the square's centre goes to the intersection of the diagonals.
    centre = torch.tensor([[(size[1] - 1) / 2, (size[0] - 1) / 2]], dtype=torch.float64)
    got = map_points(centre.expand(3, 7, 1, 2), hom)[..., 0, :].numpy()
    p0, p1, p2, p3 = (quads[..., k, :] for k in range(4))
    d1, d2 = p2 - p0, p3 - p1
    cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    lam = ((p1 - p0)[..., 0] * d2[..., 1] - (p1 - p0)[..., 1] * d2[..., 0]) / cross
    np.testing.assert_allclose(got, p0 + lam[..., None] * d1, atol=1e-6, rtol=0)
    # Mapping the keypoints back with the inverse lands on the unit-square corners.
    back = map_points(torch.from_numpy(quads), torch.linalg.inv(hom))
    np.testing.assert_allclose(back.numpy(), src.expand(3, 7, 4, 2).numpy(), atol=1e-6)


def test_affine_and_similarity_are_least_squares_fits():
    rng = np.random.default_rng(2)
    quads = random_convex_quads(rng, (20,))
    size, margin = (32, 32), 0.15
    src = torch.from_numpy(unit_square_in_patch(size, margin))
    for transform in ("affine", "similarity"):
        hom = patch_transform(quads, size, margin, transform=transform)
        torch.testing.assert_close(
            hom[:, 2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(20, 3)
        )
        residual = map_points(src.expand(20, 4, 2), hom).numpy() - quads
        # Normal equations of the fit: residuals sum to zero (translation is free) ...
        np.testing.assert_allclose(residual.sum(1), 0.0, atol=1e-8)
        if transform == "affine":  # ... and are orthogonal to the s and t coordinates
            np.testing.assert_allclose(
                np.einsum("nkd,kc->ndc", residual, UNIT_SQUARE), 0, atol=1e-8
            )
        else:  # a scaled rotation or reflection (body-frame aspect kept)
            span = 1 + 2 * margin
            scale = torch.tensor([span / size[1], span / size[0]], dtype=torch.float64)
            lin = hom[:, :2, :2] / scale  # Q's linear part: H = Q N, N = diag(scale) + shift
            gram = lin.transpose(-1, -2) @ lin
            np.testing.assert_allclose(gram[:, 0, 1], 0.0, atol=1e-9)
            np.testing.assert_allclose(gram[:, 0, 0], gram[:, 1, 1], rtol=1e-9)

    # A parallelogram is fitted exactly: affine == homography; a rotated square: all three.
    para = np.array([[60.0, 20.0], [20.0, 30.0], [30.0, 70.0], [70.0, 60.0]])
    exact = patch_transform(para, size, margin, transform="homography")
    torch.testing.assert_close(patch_transform(para, size, margin), exact)
    theta = 0.4
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    square = (UNIT_SQUARE * [-30.0, 30.0]) @ rot.T + 100.0  # anterior on the right
    for transform in TRANSFORMS:
        torch.testing.assert_close(
            patch_transform(square, size, margin, transform=transform),
            patch_transform(square, size, margin, transform="homography"),
        )


def test_affine_keeps_the_wedge_height_ratio_homography_removes_it():
    # Anterior wall 55% of the posterior wall (grade-3 wedge), walls parallel, tilted 10 deg.
    theta = math.radians(10)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    body = np.array([[32.0, 0.45 * 27], [0.0, 0.0], [0.0, 27.0], [32.0, 27.0]])  # AS PS PI AI
    quad = body @ rot.T + [50.0, 40.0]
    ratios = {}
    for transform in ("affine", "homography"):
        hom = patch_transform(quad, (64, 64), 0.15, transform=transform)
        p = map_points(quad, torch.linalg.inv(hom)).numpy()
        anterior = np.linalg.norm(p[3] - p[0])
        posterior = np.linalg.norm(p[2] - p[1])
        ratios[transform] = anterior / posterior
        assert p[0, 0] < p[1, 0] and p[0, 1] < p[3, 1]  # anterior left, superior on top
    assert ratios["affine"] == pytest.approx(0.55, abs=1e-9)
    assert ratios["homography"] == pytest.approx(1.0, abs=1e-9)


def test_map_points_broadcasts_and_promotes():
    hom = torch.eye(3, dtype=torch.float32).expand(2, 3, 3).clone()
    hom[1, 0, 2] = 5.0
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])  # float64
    out = map_points(pts, hom)
    assert out.shape == (2, 2, 2) and out.dtype == torch.float64
    np.testing.assert_allclose(out[1].numpy(), pts + [5.0, 0.0])
    assert map_points(pts.astype(np.float32), hom).dtype == torch.float32


# --------------------------------------------------------------------------- rectification


def bright_rotated_rectangle(shape, centre, half, angle, oversample=4):
    """Anti-aliased (area-sampled) image of a filled rectangle and its corners (AS, PS, PI, AI).

    The body frame's s axis runs along ``angle``; anterior is the -s side, superior -t."""
    h, w = shape
    o = (np.arange(oversample) + 0.5) / oversample - 0.5
    yy = (np.arange(h)[:, None] + o[None, :]).reshape(-1)
    xx = (np.arange(w)[:, None] + o[None, :]).reshape(-1)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx[None, :] - centre[0], yy[:, None] - centre[1]
    along, across = c * dx + s * dy, -s * dx + c * dy
    inside = (np.abs(along) <= half[0]) & (np.abs(across) <= half[1])
    image = inside.reshape(h, oversample, w, oversample).mean((1, 3)).astype(np.float32)
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half  # AS, PS, PI, AI
    corners = np.stack(
        [
            centre[0] + c * local[:, 0] - s * local[:, 1],
            centre[1] + s * local[:, 0] + c * local[:, 1],
        ],
        -1,
    )
    return image, corners


@pytest.mark.parametrize("transform", ["affine", "homography", "similarity"])
def test_rotated_bright_rectangle_is_rectified_upright(transform):
    half = (26.0, 26.0) if transform == "similarity" else (30.0, 21.0)
    image, corners = bright_rotated_rectangle((160, 170), (84.0, 78.0), half, math.radians(27))
    size, margin = (64, 64), 0.15
    patches = vertebral_patches(
        image, np.stack([corners] * 5), size=size, margin=margin, transform=transform
    )
    patch = patches[2, 0].numpy()
    border = size[0] * margin / (1 + 2 * margin)  # 7.4 px of dark margin on each side
    inner = slice(int(math.ceil(border)) + 2, int(size[0] - border) - 2)
    assert patch[inner, inner].min() > 0.95
    outer = int(border) - 2
    for band in (patch[:outer], patch[-outer:], patch[:, :outer], patch[:, -outer:]):
        assert band.max() < 0.02
    # The edges run along the patch rows and columns: a rotated rectangle would smear them.
    rows = patch[:, inner].mean(1)
    cols = patch[inner, :].mean(0)
    for profile in (rows, cols):
        edge = np.flatnonzero(profile > 0.5)
        assert edge[0] == pytest.approx(border - 0.5, abs=1.0)
        assert edge[-1] == pytest.approx(size[0] - border - 0.5, abs=1.0)


# --------------------------------------------------------------------------- simulated spines


def _radiograph(seed, grade_l1):
    spine = spine_volume(
        femoral_neck_bmd=0.8,
        z=0.0,
        genant_grades=[grade_l1, 0, 0, 0, 0],
        deformity_types=["wedge" if grade_l1 else "none"] + ["none"] * 4,
        bmi=25.0,
        sex="F",
        rng=np.random.default_rng(seed),
    )
    return lateral_radiograph(spine)


@pytest.fixture(scope="module")
def radiographs():
    """Two grade-0 spines and one with a grade-3 wedge at L1."""
    return {"normal": [_radiograph(11, 0), _radiograph(12, 0)], "wedge": _radiograph(13, 3)}


def _endplate_rows(patch):
    """Row of maximum intensity in the top half, anterior vs posterior columns (64 x 64)."""
    top = patch[..., :32, :]
    anterior = top[..., 10:22].mean(-1).argmax(-1)
    posterior = top[..., 42:54].mean(-1).argmax(-1)
    return anterior, posterior


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_simulated_patches_show_bone_between_discs(radiographs, transform):
    for r in [*radiographs["normal"], radiographs["wedge"]]:
        patches = vertebral_patches(r.image, r.keypoints, transform=transform)
        assert patches.shape == (5, 1, 64, 64) and patches.dtype == torch.float32
        assert torch.isfinite(patches).all()
        p = patches[:, 0].numpy()
        body = p[:, 24:40, 24:40].mean((1, 2))
        discs = np.concatenate([p[:, :4, 24:40], p[:, -4:, 24:40]], 1).mean((1, 2))
        assert np.all(body > discs + 0.02), (body, discs)
        if transform == "similarity":  # the frame does not follow the (wedge) body's height
            continue
        # Without a margin the patch is all body: no dark disc rows at the edges.
        p0 = vertebral_patches(r.image, r.keypoints, margin=0.0, transform=transform)[:, 0]
        edge0 = torch.cat([p0[:, :4, 24:40], p0[:, -4:, 24:40]], 1).mean((1, 2)).numpy()
        assert np.all(edge0 > discs + 0.02)


def test_wedge_shows_as_a_sloped_superior_endplate(radiographs):
    for r in radiographs["normal"]:
        anterior, posterior = _endplate_rows(vertebral_patches(r.image, r.keypoints)[:, 0])
        assert torch.all((anterior - posterior).abs() <= 2), (anterior, posterior)
    r = radiographs["wedge"]
    anterior, posterior = _endplate_rows(vertebral_patches(r.image, r.keypoints)[:, 0])
    assert anterior[0] - posterior[0] >= 5  # L1: endplate lower anteriorly (patch left)
    assert torch.all((anterior[1:] - posterior[1:]).abs() <= 2)
    # Similarity also shows it; the exact homography rectifies the wedge outline away.
    sim = _endplate_rows(vertebral_patches(r.image, r.keypoints, transform="similarity")[0, 0])
    assert sim[0] - sim[1] >= 4
    hom = _endplate_rows(vertebral_patches(r.image, r.keypoints, transform="homography")[0, 0])
    assert abs(int(hom[0] - hom[1])) <= 3


def test_batch_equals_per_item_and_numpy_equals_torch(radiographs):
    rs = [*radiographs["normal"], radiographs["wedge"]]
    images = np.stack([r.image for r in rs])
    keypoints = np.stack([r.keypoints for r in rs])
    for transform in TRANSFORMS:
        batched = vertebral_patches(images, keypoints, size=(48, 40), transform=transform)
        assert batched.shape == (3, 5, 1, 48, 40)
        for b in range(3):
            single = vertebral_patches(
                torch.from_numpy(images[b]),
                torch.from_numpy(keypoints[b]),
                size=(48, 40),
                transform=transform,
            )
            torch.testing.assert_close(batched[b], single, atol=1e-6, rtol=0)
    # dtype follows a floating torch image; integer images are sampled as float32
    as64 = vertebral_patches(torch.from_numpy(images).double(), keypoints)
    assert as64.dtype == torch.float64
    torch.testing.assert_close(
        as64.float(), vertebral_patches(images, keypoints), atol=1e-5, rtol=1e-5
    )
    ints = (images * 1000).astype(np.int16)
    from_int = vertebral_patches(torch.from_numpy(ints), keypoints)
    assert from_int.dtype == torch.float32
    torch.testing.assert_close(from_int, vertebral_patches(ints.astype(np.float32), keypoints))
    empty = vertebral_patches(images[:0], keypoints[:0], size=(8, 8))
    assert empty.shape == (0, 5, 1, 8, 8)


def test_patches_are_differentiable_in_the_image_and_zero_outside(radiographs):
    r = radiographs["normal"][0]
    image = torch.from_numpy(r.image).requires_grad_(True)
    vertebral_patches(image, r.keypoints).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    # Bodies shifted half out of the image: their outside half is zero-padded.
    shifted = r.keypoints - [r.image.shape[1] - 1 - r.keypoints[..., 0].min() + 16.0, 0.0]
    patches = vertebral_patches(r.image, shifted)
    assert torch.all(patches[..., :, -20:] == 0)  # posterior half (image left) is outside
    assert torch.all(patches[..., 24:40, :10].mean((-1, -2)) > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(radiographs):
    r = radiographs["wedge"]
    cpu = vertebral_patches(r.image, r.keypoints)
    gpu = vertebral_patches(torch.from_numpy(r.image).cuda(), r.keypoints)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- errors


GOOD_IMAGE = np.zeros((40, 80), dtype=np.float32)
GOOD_KP = np.array([rectangle_quad(16 * v + 2, 5, 16 * v + 14, 30) for v in range(5)], float)


def _with(v, k, value):
    kp = GOOD_KP.copy()
    kp[v, k] = value
    return kp


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": np.zeros(40)}, "image must have shape"),
        ({"image": np.zeros((1, 1, 40, 80))}, "image must have shape"),
        ({"image": np.array([["a"]])}, "image must be numeric"),
        ({"image": np.zeros((40, 80), complex)}, "image must be real"),
        ({"image": np.zeros((40, 0))}, "image must not be empty"),
        ({"keypoints": GOOD_KP[:4]}, r"keypoints must have shape \(5, 4, 2\)"),
        ({"keypoints": GOOD_KP[:, :3]}, "keypoints must have shape"),
        ({"keypoints": GOOD_KP[None]}, "keypoints must have shape"),
        ({"image": GOOD_IMAGE[None], "keypoints": GOOD_KP}, r"\(1, 5, 4, 2\)"),
        ({"keypoints": _with(2, 1, np.nan)}, "keypoints must be finite"),
        ({"keypoints": _with(1, 0, np.inf)}, "keypoints must be finite"),
        ({"keypoints": GOOD_KP[:, [0, 2, 1, 3]]}, "keypoints must be convex"),
        ({"keypoints": _with(3, 2, GOOD_KP[3, 1])}, "keypoints must be convex"),
        ({"keypoints": np.full((5, 4, 2), 3.0)}, "keypoints must be convex"),
        ({"keypoints": [["x"]]}, "keypoints must be numeric"),
        ({"size": (0, 64)}, "size must be two positive integers"),
        ({"size": (64,)}, "size must be"),
        ({"size": (64.0, 64)}, "size must be"),
        ({"size": (True, 64)}, "size must be"),
        ({"size": 64}, "size must be"),
        ({"margin": -0.1}, "margin must be a finite number >= 0"),
        ({"margin": float("nan")}, "margin must be"),
        ({"margin": "0.1"}, "margin must be"),
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"transform": "projective"}, "transform must be one of"),
    ],
)
def test_vertebral_patches_errors(kwargs, match):
    args = {"image": GOOD_IMAGE, "keypoints": GOOD_KP, **kwargs}
    with pytest.raises(ValueError, match=match):
        vertebral_patches(args.pop("image"), args.pop("keypoints"), **args)


def test_transform_and_map_points_errors():
    with pytest.raises(ValueError, match="quads must have shape"):
        patch_transform(np.zeros((4, 3)), (8, 8), 0.1)
    with pytest.raises(ValueError, match="quads must be convex"):
        patch_transform(GOOD_KP[0, [0, 2, 1, 3]], (8, 8), 0.1)
    with pytest.raises(ValueError, match="margin must be"):
        patch_transform(GOOD_KP, (8, 8), -1.0)
    with pytest.raises(ValueError, match="size must be"):
        patch_transform(GOOD_KP, (8, -8), 0.1)
    with pytest.raises(ValueError, match="transform must be one of"):
        patch_transform(GOOD_KP, (8, 8), 0.1, transform="rigid")
    with pytest.raises(ValueError, match="points must have shape"):
        map_points(np.zeros((4, 3)), np.eye(3))
    with pytest.raises(ValueError, match="homography must have shape"):
        map_points(np.zeros((4, 2)), np.eye(2))
    with pytest.raises(ValueError, match="do not broadcast"):
        map_points(np.zeros((3, 4, 2)), np.stack([np.eye(3)] * 2))


def test_points_beyond_the_horizon_of_a_homography_are_zero():
    # A strongly tapered body with a wide margin: part of the patch lies beyond the
    # homography's line at infinity (w' <= 0); those pixels must read 0, not wrap around.
    quad = np.array([[200.0, 200.0], [210.0, 200.0], [260.0, 260.0], [150.0, 260.0]])
    size, margin = (32, 32), 1.0
    hom = patch_transform(quad, size, margin, transform="homography")
    jj, ii = np.meshgrid(np.arange(size[1]), np.arange(size[0]))
    h3 = hom[2].numpy()
    w = h3[0] * jj + h3[1] * ii + h3[2]
    assert (w <= 0).sum() > 100
    image = np.ones((500, 500), np.float32)
    patch = vertebral_patches(
        image, np.stack([quad] * 5), size=size, margin=margin, transform="homography"
    )[0, 0].numpy()
    assert np.all(patch[w <= 0] == 0)
    assert np.all(patch[w > 0.2] > 0.99)
