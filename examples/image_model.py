"""An image survival model end to end, Kong et al. 2022 style, on simulated spine radiographs.

Simulate a cohort with lateral spine radiographs -> detect the 20 vertebral corners with the
shipped detector -> cut L1-L5 patches -> fit an ``ImageSurvivalModel`` (vertebral-patch CNN
plus the clinical covariates into a DeepSurv head) -> absolute survival curves of test
patients and Grad-CAM maps of what raises the highest-risk patients' hazard. A figure is
saved. This is a small, fast run to show the API; ``benchmarks/reproduce.py`` runs the study
at its published size.

Run with ``.venv/bin/python examples/image_model.py [--n 800] [--epochs 4]``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from fracrisk import ImageSurvivalModel
from fracrisk.data import ImageCohortDataset
from fracrisk.explain import plot_grad_cam
from fracrisk.imaging import default_train_transform
from fracrisk.metrics import harrell_c
from fracrisk.simulate import cohort

COVARIATES = ["age", "sex", "bmi", "glucocorticoids", "secondary_osteoporosis"]


def main(n: int = 800, epochs: int = 4, out: str = "image_model.png", seed: int = 0) -> str:
    """Run the example; returns the path of the saved figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as work:
        simulated = cohort(n, preset="kong2022", seed=seed, images=("spine",), out_dir=work)
        train, test = simulated.split(0.25, method="stratified", seed=seed)
        print(f"{simulated!r}\n{len(train)} train / {len(test)} test patients")

        options = {
            "covariates": COVARIATES,
            "cache_dir": f"{work}/cache",
            "keypoint_columns": (),  # keypoints from the detector, as Kong et al.
            "progress": False,
        }
        train_data = ImageCohortDataset(
            train, "patches", transform=default_train_transform("patches", seed=seed), **options
        )
        test_data = ImageCohortDataset(
            test, "patches", preprocessor=train_data.preprocessor, **options
        )

        model = ImageSurvivalModel(
            "vertebral_patches",
            {"backbone": "resnet10t", "pooling": "attention"},
            max_epochs=epochs,
            patience=epochs,
            batch_size=64,
            learning_rate=1e-3,
            seed=seed,
        ).fit(train_data)
        score = model.predict_score(test_data)
        c = harrell_c(test_data.time, test_data.event, score)
        print(f"held-out Harrell C: {c:.3f} ({int(test_data.event.sum())} test fractures)")

        ranked = np.argsort(-score)
        chosen = ranked[[0, len(ranked) // 4, len(ranked) // 2, -1]]
        curves = model.predict_survival(test_data, times=np.linspace(0.0, 5.0, 51))
        images, maps = model.grad_cam(test_data, positions=ranked[:3])

        fig, ax = plt.subplots(figsize=(5, 3.6))
        for position in chosen:
            patient = curves.index[position]
            ax.plot(curves.columns, curves.iloc[position], label=f"{patient}")
        ax.set_xlabel("years")
        ax.set_ylabel("fracture-free probability S(t)")
        ax.set_title("Absolute survival curves (4 test patients)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        curve_path = out.replace(".png", "_curves.png")
        fig.savefig(curve_path, dpi=90)
        plt.close(fig)

        titles = [f"{test_data.patient_ids[p]} (eta {score[p]:+.2f})" for p in ranked[:3]]
        cam = plot_grad_cam(images, maps, labels=["L1", "L2", "L3", "L4", "L5"], titles=titles)
        cam.suptitle("Grad-CAM: what raises the hazard above the average test patient", y=1.02)
        cam.savefig(out, dpi=90, bbox_inches="tight")
        plt.close(cam)
    print(f"saved {out} and {curve_path}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="image_model.png")
    args = parser.parse_args()
    main(n=args.n, epochs=args.epochs, out=args.out)
