"""Speed and memory of the cohort simulator with images.

(a) ``--n`` patients (default 1,000) with a 128^3 hip CT and a lumbar spine (volume, lateral
radiograph, keypoints), written to disk as the cohort is drawn: the target is < 60 s on this
2-core machine. The time to make the images is reported apart from the time to compress
and write them.
(b) Memory stays bounded as n grows: peak resident memory (ru_maxrss) of the process after
``--stream`` sizes (default 1,000 then 4,000 patients, spine images), each in a fresh
subprocess.

Usage::

    python benchmarks/bench_simulate.py [--n 1000] [--stream 1000 4000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _one_run(n: int, images: list[str], shape, out: str, workers: int = 1) -> float:
    from fracrisk.simulate import cohort

    start = time.perf_counter()
    simulated = cohort(
        n,
        preset="population",
        seed=0,
        images=images,
        out_dir=out,
        image_shape=shape,
        workers=workers,
    )
    seconds = time.perf_counter() - start
    assert len(simulated) == n
    return seconds


def _generation_only(n: int, shape) -> tuple[float, float]:
    """Seconds per patient to make (not write) a hip CT and a spine + radiograph."""
    from fracrisk.simulate.hip_ct import hip_ct_volume
    from fracrisk.simulate.spine import lateral_radiograph, spine_volume

    rng = np.random.default_rng(0)
    hip_ct_volume(
        femoral_neck_bmd=0.8,
        z=0.0,
        bmi=27,
        sex="F",
        hip_axis_length=104,
        neck_shaft_angle=129,
        rng=rng,
        shape=shape,
    )  # warm the texture banks
    spine_volume(
        femoral_neck_bmd=0.8,
        z=0.0,
        genant_grades=[0] * 5,
        deformity_types=["none"] * 5,
        bmi=27,
        sex="F",
        rng=rng,
    )
    t_ct = t_spine = 0.0
    for _ in range(n):
        start = time.perf_counter()
        hip_ct_volume(
            femoral_neck_bmd=float(rng.uniform(0.5, 1.1)),
            z=float(rng.normal()),
            bmi=27,
            sex="F",
            hip_axis_length=104,
            neck_shaft_angle=129,
            rng=rng,
            shape=shape,
        )
        t_ct += time.perf_counter() - start
        start = time.perf_counter()
        lateral_radiograph(
            spine_volume(
                femoral_neck_bmd=float(rng.uniform(0.5, 1.1)),
                z=float(rng.normal()),
                genant_grades=[0, 1, 0, 2, 0],
                deformity_types=["none", "wedge", "none", "biconcave", "none"],
                bmi=27,
                sex="F",
                rng=rng,
            )
        )
        t_spine += time.perf_counter() - start
    return t_ct / n, t_spine / n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--stream", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--child", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one streaming run in a fresh process: print its peak memory
        _one_run(int(args.child[0]), ["spine"], None, args.child[1])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return 0
    print(
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), no GPU; "
        f"Python {platform.python_version()}"
    )
    shape = (128, 128, 128)
    ct_s, spine_s = _generation_only(50, shape)
    print(
        f"generation only: hip CT 128^3 {ct_s * 1e3:.1f} ms, spine volume + radiograph "
        f"{spine_s * 1e3:.1f} ms per patient"
    )
    with tempfile.TemporaryDirectory() as tmp:
        seconds = _one_run(args.n, ["hip_ct", "spine"], shape, tmp, workers=os.cpu_count() or 1)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
    verdict = "PASS" if seconds < 60 else "FAIL"
    print(
        f"{verdict}: {args.n} patients with a 128^3 hip CT and a spine written in "
        f"{seconds:.1f} s (target < 60 s); {size / 1e9:.2f} GB on disk"
    )
    peaks = []
    for n in args.stream:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), tmp],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        peaks.append(float(out.strip().splitlines()[-1]))
        print(f"streaming {n} patients with spine images: peak memory {peaks[-1]:.0f} MB")
    if len(peaks) > 1:
        growth = peaks[-1] / peaks[0]
        print(
            f"{'PASS' if growth < 1.3 else 'FAIL'}: peak memory x{growth:.2f} for "
            f"x{args.stream[-1] / args.stream[0]:.0f} patients (bounded: < x1.3)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
