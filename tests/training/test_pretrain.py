"""Self-supervised pretraining: the contrastive loss, what the backbone learns, safe weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fracrisk.losses import nt_xent_loss
from fracrisk.training.pretrain import (
    augment_views,
    load_unlabelled_images,
    pretrain_backbone,
    save_backbone_weights,
)


def test_nt_xent_is_the_cross_entropy_of_finding_the_partner_view():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    tau, total = 0.5, 0.0
    for a in range(8):
        partner = (a + 4) % 8
        others = [b for b in range(8) if b != a]
        logits = torch.stack([z[a] @ z[b] / tau for b in others])
        total += -(z[a] @ z[partner] / tau - torch.logsumexp(logits, 0))
    assert float(nt_xent_loss(z1, z2, tau)) == pytest.approx(float(total) / 8, rel=1e-5)
    # Identical views far from the others: a loss near 0; unrelated views: about log(2n - 1).
    apart = torch.eye(4) * 10
    assert float(nt_xent_loss(apart, apart, 0.1)) < 1e-3
    big = torch.randn(256, 32)
    assert float(nt_xent_loss(big, torch.randn(256, 32), 1.0)) == pytest.approx(
        math.log(511), rel=0.05
    )
    with pytest.raises(ValueError, match="n >= 2"):
        nt_xent_loss(z1[:1], z2[:1])


def _blobs(n, size=32, seed=0):
    """Images of one bright disc each, at random places and sizes (distinct images)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(6, size - 6), rng.uniform(6, size - 6), rng.uniform(2, 6)
        out[i, 0] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) + 0.1 * rng.normal(size=(size, size))
    return torch.from_numpy(out)


def _retrieval(backbone, images) -> float:
    """Share of images whose second view's nearest embedding is their own first view."""
    torch.manual_seed(1)
    with torch.no_grad():
        a = torch.nn.functional.normalize(backbone(augment_views(images)), dim=1)
        b = torch.nn.functional.normalize(backbone(augment_views(images)), dim=1)
    return float(((b @ a.T).argmax(dim=1) == torch.arange(len(images))).float().mean())


def test_pretraining_learns_to_recognise_an_image_under_augmentation(tmp_path):
    from fracrisk.encoders import create_backbone

    train, held_out = _blobs(96, seed=0), _blobs(32, seed=1)
    history: list[float] = []
    backbone = pretrain_backbone(
        train, epochs=10, batch_size=32, seed=0, accelerator="cpu", history=history
    )
    assert len(history) == 10 and history[-1] < history[0]
    torch.manual_seed(0)
    untrained = create_backbone("resnet10t").eval()
    trained, chance = _retrieval(backbone, held_out), _retrieval(untrained, held_out)
    assert trained > max(0.3, chance + 0.1), (trained, chance)  # chance is 1/32

    path = save_backbone_weights(backbone, tmp_path / "w.safetensors")
    restarted = create_backbone("resnet10t", weights=path).eval()
    x = held_out[:4]
    torch.testing.assert_close(restarted(x), backbone(x))
    with pytest.raises(FileExistsError, match="overwrite"):
        save_backbone_weights(backbone, path)
    with pytest.raises(ValueError, match="safetensors"):
        save_backbone_weights(backbone, tmp_path / "w.pt")


def test_an_image_model_starts_from_pretrained_weights(tmp_path):
    from fracrisk import ImageSurvivalModel
    from fracrisk.testing import tiny_ct_cohort

    cohort = tiny_ct_cohort(tmp_path / "cts", 40, size=16, seed=0)
    images, failures = load_unlabelled_images(cohort["hip_ct_path"], "drr", size=(24, 24))
    assert images.shape == (40, 3, 24, 24) and failures == []
    backbone = pretrain_backbone(images, epochs=1, batch_size=16, accelerator="cpu")
    path = save_backbone_weights(backbone, tmp_path / "drr.safetensors")
    model = ImageSurvivalModel(
        "multiview_drr",
        {"backbone": "resnet10t", "shared_backbone": True, "backbone_kwargs": {"weights": path}},
        image_options={"size": (24, 24), "covariates": []},
        max_epochs=1,
        batch_size=16,
        accelerator="cpu",
        logger=None,
    ).fit(cohort)
    assert np.isfinite(model.predict_score(cohort)).all()


def test_unusable_images_are_named_or_left_out(tmp_path):
    from fracrisk.testing import tiny_ct_cohort

    cohort = tiny_ct_cohort(tmp_path / "cts", 6, size=16, seed=0)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a NIfTI file")
    paths = [*cohort["hip_ct_path"], str(bad)]
    with pytest.raises(ValueError, match=r"broken\.nii\.gz.*position 6"):
        load_unlabelled_images(paths, "drr", size=(16, 16))
    images, failures = load_unlabelled_images(paths, "drr", size=(16, 16), on_error="skip")
    assert len(images) == 6 and [f[0] for f in failures] == [6]
    with pytest.raises(ValueError, match="at least 4 images"):
        pretrain_backbone(torch.zeros(1, 3, 16, 16), epochs=1)


def test_the_pretrain_command(tmp_path, capsys):
    import pandas as pd

    from fracrisk.cli import main
    from fracrisk.testing import tiny_ct_cohort

    cohort = tiny_ct_cohort(tmp_path / "cts", 12, size=16, seed=0)
    manifest = tmp_path / "archive.csv"
    pd.DataFrame({"hip_ct_path": cohort["hip_ct_path"]}).to_csv(manifest, index=False)
    out = tmp_path / "w.safetensors"
    args = ["pretrain", "--manifest", str(manifest), "--kind", "drr", "--size", "16", "16"]
    args += ["--epochs", "1", "--batch-size", "8", "--accelerator", "cpu", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert out.is_file() and "contrastive loss per epoch" in capsys.readouterr().out
    assert main([*args, "--no-progress"]) == 2  # never overwritten silently
    assert "--overwrite" in capsys.readouterr().err
