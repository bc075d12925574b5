"""Speed and accuracy of the cone-beam DRR renderer against DiffDRR's Siddon ray tracer.

Both renderers get the same simulated 128^3 hip CT (1 mm voxels), converted to linear
attenuation by fracrisk's ``hu_to_attenuation``, and the same rays: fracrisk's default cone
beam (SDD 1020 mm, SID 850 mm), 3 views (frontal, lateral, axial) of 224 x 224 pixels. The rays
of every pixel come from :func:`fracrisk.imaging.detector_rays` and are handed to DiffDRR's
``DRR.render`` in world millimetres, so the two images can be compared pixel by pixel.

Targets (issue 5): fracrisk at least 50x faster than DiffDRR for the 3 views, with Pearson
correlation above 0.999 and relative L2 error under 2% against DiffDRR's Siddon images. The
floor is the time to read the volume once (a sum over its 8 MB of float32, and loading the
NIfTI file from disk).

DiffDRR is a benchmark-only peer, not a dependency of fracrisk (it pulls pyvista and more).
Install it beside fracrisk with ``make bench-drr`` or::

    pip install --no-deps diffdrr==0.6.1
    pip install fastcore einops torchio kornia roma imageio

Usage::

    python benchmarks/bench_drr.py [--repeats 7] [--size 224] [--n 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

VIEWS = ("frontal", "lateral", "axial")


def _best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` wall-clock runs of ``fn()`` in seconds, after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _hip_ct(n: int):
    from fracrisk.simulate.hip_ct import hip_ct_volume

    ct = hip_ct_volume(
        femoral_neck_bmd=0.75,
        z=0.0,
        bmi=27.0,
        sex="F",
        hip_axis_length=104.0,
        neck_shaft_angle=129.0,
        rng=np.random.default_rng(0),
        shape=(n, n, n),
    )
    return ct.volume_hu, ct.spacing


def _diffdrr_renderer(mu: np.ndarray, spacing):
    """A DiffDRR ``DRR`` whose density is ``mu`` (1/mm) and whose world unit is fracrisk's mm.

    The affine maps voxel index ``(i, j, k)`` of the ``(z, y, x)`` array to
    ``((i + 0.5) dz, (j + 0.5) dy, (k + 0.5) dx)``: fracrisk's coordinates, voxel centres at
    half-integers; DiffDRR's Siddon (``voxel_shift=0.5``) puts voxel centres at integer indices.
    """
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = 0.5 * np.asarray(spacing)
    image = ScalarImage(tensor=torch.from_numpy(mu)[None], affine=affine)
    subject = read(image, orientation=None, center_volume=False)
    # DiffDRR's detector is not used: the rays are given; sdd/height/delx only build it.
    drr = DRR(subject, sdd=1020.0, height=8, delx=1.0, renderer="siddon")
    drr.density = torch.from_numpy(mu)  # attenuation as given, not DiffDRR's HU transfer
    return drr


def _rays(shape, spacing, size, geometry):
    from fracrisk.imaging import detector_rays

    starts, ends = [], []
    for view in VIEWS:
        start, end = detector_rays(view, shape, spacing, size=size, geometry=geometry)
        starts.append(start.reshape(-1, 3))
        ends.append(end.reshape(-1, 3))
    as_tensor = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))  # noqa: E731
    return as_tensor(starts), as_tensor(ends)


def _agreement(ours: np.ndarray, peer: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and relative L2 error ||ours - peer|| / ||peer||."""
    r = float(np.corrcoef(ours.ravel(), peer.ravel())[0, 1])
    rel = float(np.linalg.norm(ours - peer) / np.linalg.norm(peer))
    return r, rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peer-repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n", type=int, default=128, help="volume edge in voxels")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    import nibabel as nib

    from fracrisk.imaging import ConeBeam, hu_to_attenuation, load_ct, render_drr

    volume_hu, spacing = _hip_ct(args.n)
    size = (args.size, args.size)
    geometry = ConeBeam()
    mu = hu_to_attenuation(volume_hu.astype(np.float32))

    # Floor: read the volume once, in memory and from disk.
    mu_tensor = torch.from_numpy(mu)
    t_sum = _best_of(lambda: mu_tensor.sum(), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hip.nii.gz")
        nib.save(nib.Nifti1Image(volume_hu, np.diag([*spacing[::-1], 1.0])), path)
        t_load = _best_of(lambda: load_ct(path), args.repeats)

    # fracrisk: the compiled shear-warp kernel (the default on the CPU without autograd).
    def ours_all():
        return render_drr(volume_hu, spacing, VIEWS, size=size, geometry=geometry)

    ours = ours_all().numpy()
    t_ours = _best_of(ours_all, args.repeats)
    t_ours_one = _best_of(
        lambda: render_drr(volume_hu, spacing, "frontal", size=size, geometry=geometry),
        args.repeats,
    )
    # The differentiable grid_sample path (used under autograd, on CUDA and in bf16).
    volume_grad = torch.from_numpy(volume_hu.astype(np.float32)).requires_grad_(True)
    t_ours_torch = _best_of(
        lambda: render_drr(volume_grad, spacing, VIEWS, size=size, geometry=geometry),
        max(1, args.repeats // 2),
    )
    t_parallel = _best_of(lambda: render_drr(volume_hu, spacing, VIEWS, size=size), args.repeats)

    rows = [
        ("read the volume once (sum of 128^3 float32)", t_sum),
        ("load the CT from .nii.gz (fracrisk.load_ct)", t_load),
        ("fracrisk cone beam, 1 view", t_ours_one),
        ("fracrisk cone beam, 3 views (compiled kernel)", t_ours),
        ("fracrisk cone beam, 3 views (grid_sample, autograd)", t_ours_torch),
        ("fracrisk parallel beam, 3 views", t_parallel),
    ]
    try:
        drr = _diffdrr_renderer(mu, spacing)
        import diffdrr
    except ImportError as err:
        raise SystemExit(
            f"DiffDRR is needed for the comparison ({err}); see the docstring"
        ) from err
    source, target = _rays(volume_hu.shape, spacing, size, geometry)

    def peer(views=slice(None)):
        with torch.no_grad():
            return drr.render(drr.density, source[views], target[views])

    theirs = peer().reshape(len(VIEWS), *size).numpy()
    t_peer = _best_of(peer, args.peer_repeats)
    t_peer_one = _best_of(lambda: peer(slice(0, 1)), args.peer_repeats)
    rows += [
        (f"DiffDRR {diffdrr.__version__} Siddon, 1 view", t_peer_one),
        (f"DiffDRR {diffdrr.__version__} Siddon, 3 views", t_peer),
    ]

    print(
        f"DRR of a simulated {args.n}^3 hip CT ({spacing[0]:g} mm voxels), cone beam SDD "
        f"{geometry.source_to_detector:g} mm, SID {geometry.source_to_isocentre:g} mm, "
        f"{args.size}x{args.size} pixels; best of {args.repeats} (DiffDRR: "
        f"{args.peer_repeats}) after a warm-up.\n"
    )
    print("| operation | seconds | DiffDRR / this |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.4f} | {t_peer / seconds:.1f} |")

    print("\n| view | Pearson r | relative L2 error |")
    print("|---|---:|---:|")
    for i, view in enumerate(VIEWS):
        r, rel = _agreement(ours[i], theirs[i])
        print(f"| {view} | {r:.5f} | {100 * rel:.2f}% |")
    r_all, rel_all = _agreement(ours, theirs)
    print(f"| all 3 | {r_all:.5f} | {100 * rel_all:.2f}% |")

    speedup = t_peer / t_ours
    print(
        f"\nMachine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, no GPU."
    )
    print(
        f"{'PASS' if speedup >= 50 else 'FAIL'}: 3 views >= 50x faster than DiffDRR "
        f"(measured {speedup:.0f}x)"
    )
    print(f"{'PASS' if r_all > 0.999 else 'FAIL'}: Pearson r > 0.999 (measured {r_all:.5f})")
    print(
        f"{'PASS' if rel_all < 0.02 else 'FAIL'}: relative L2 < 2% (measured {100 * rel_all:.2f}%)"
    )
    print(
        f"Floor: 3 views take {t_ours / t_sum:.0f}x the time of one read of the volume in "
        f"memory and {t_ours / t_load:.2f}x the time of loading it from .nii.gz."
    )


if __name__ == "__main__":
    main()
