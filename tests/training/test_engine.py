"""The Lightning engine: resume after SIGKILL is bit-identical, safe checkpoints, devices, logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from fracrisk import DeepSurv, load_model
from fracrisk.exceptions import DeviceUnavailableError
from fracrisk.simulate import clinical_cohort
from fracrisk.testing import tiny_ct_cohort

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning.pytorch as pl
    import pandas as pd
    import torch
    from fracrisk import DeepSurv, ImageSurvivalModel
    from fracrisk.simulate import clinical_cohort

    kind, checkpoint_dir, out, resume, kill_epoch = sys.argv[1:6]
    torch.set_num_threads(1)

    class KillAt(pl.Callback):
        # SIGKILL this process in the middle of an epoch: no clean-up runs.
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == int(kill_epoch) and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [KillAt()] if int(kill_epoch) >= 0 else []
    if kind == "deepsurv":
        data = clinical_cohort(900, seed=4)
        model = DeepSurv(hidden=(16, 8), dropout=0.2, batch_size=128, max_epochs=5,
                         lr_schedule="onecycle", accelerator="cpu",
                         checkpoint_dir=checkpoint_dir, seed=3)
    else:
        data = pd.read_csv(sys.argv[6])
        model = ImageSurvivalModel(
            "multiview_drr",
            {"backbone": "resnet10t", "shared_backbone": True},
            image_options={"size": (32, 32), "cache_dir": sys.argv[7], "progress": False},
            head_kwargs={"hidden": [8], "dropout": 0.1},
            batch_size=16, max_epochs=3, lr_schedule="cosine", accelerator="cpu",
            checkpoint_dir=checkpoint_dir, seed=1,
        )
    model.fit(data, resume=resume == "1", callbacks=callbacks)
    model.save(out)
    """
)


def _ct_cohort(directory):
    path = directory / "cohort.csv"
    tiny_ct_cohort(directory, 60, seed=1).to_csv(path, index=False)
    return path


def _run(tmp_path, *args):
    script = tmp_path / "fit.py"
    script.write_text(_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _killed_then_resumed_equals_uninterrupted(tmp_path, kind, kill_epoch, *extra):
    whole = _run(tmp_path, kind, tmp_path / "ckpt_whole", tmp_path / "whole", 0, -1, *extra)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _run(tmp_path, kind, tmp_path / "ckpt", tmp_path / "never", 0, kill_epoch, *extra)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "never").exists()
    last = tmp_path / "ckpt" / "last.ckpt"
    state = torch.load(last, weights_only=True)  # loads without executing code
    assert state["epoch"] == kill_epoch - 1  # the last finished epoch
    resumed = _run(tmp_path, kind, tmp_path / "ckpt", tmp_path / "resumed", 1, -1, *extra)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_model(tmp_path / "whole"), load_model(tmp_path / "resumed")
    for (name, x), (_, y) in zip(
        a.network_.state_dict().items(), b.network_.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert torch.equal(
        torch.as_tensor(a.baseline_hazard_.cumulative_hazard(np.linspace(0, 8, 30))),
        torch.as_tensor(b.baseline_hazard_.cumulative_hazard(np.linspace(0, 8, 30))),
    )
    first, second = (
        pd.read_csv(tmp_path / "ckpt" / "logs" / f"version_{v}" / "metrics.csv") for v in (0, 1)
    )  # the killed run's log is kept; the resumed run logs the epochs it trained
    assert {"train_loss", "val_loss", "val_uno_c"} <= set(first.columns)
    assert first["epoch"].max() == kill_epoch - 1 and second["epoch"].min() == kill_epoch


@pytest.mark.slow
def test_deepsurv_killed_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    _killed_then_resumed_equals_uninterrupted(tmp_path, "deepsurv", 2)


@pytest.mark.slow
def test_image_model_killed_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    cohort = _ct_cohort(tmp_path / "cts")
    _killed_then_resumed_equals_uninterrupted(
        tmp_path, "image", 1, cohort, tmp_path / "image_cache"
    )


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    cohort = clinical_cohort(300, seed=1)
    settings = {
        "hidden": (8,),
        "max_epochs": 2,
        "accelerator": "cpu",
        "checkpoint_dir": str(tmp_path),
    }
    DeepSurv(**settings).fit(cohort)
    assert (tmp_path / "last.ckpt").exists()
    assert (tmp_path / "logs" / "version_0" / "metrics.csv").exists()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        DeepSurv(**settings).fit(cohort)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        DeepSurv(hidden=(8,), max_epochs=1).fit(cohort, resume=True)
    # resume=True after the run has finished: nothing left to train, same weights
    first = load_like = DeepSurv(**settings).fit(cohort, resume=True)
    assert len(first.history_.train_loss) == 2 and load_like is first


def test_checkpoints_never_unpickle_code(tmp_path):
    from fracrisk.training import SafeCheckpointIO

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|global"):
        SafeCheckpointIO().load_checkpoint(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_an_absent_gpu_is_a_fracrisk_error():
    cohort = clinical_cohort(200, seed=1)
    with pytest.raises(DeviceUnavailableError, match="asks for a GPU, but torch sees none"):
        DeepSurv(accelerator="gpu").fit(cohort)
    with pytest.raises(DeviceUnavailableError):
        DeepSurv(accelerator="cuda", devices=2).fit(cohort)


def test_training_options_reach_lightning(tmp_path):
    cohort = clinical_cohort(600, seed=2)
    model = DeepSurv(
        hidden=(8,),
        max_epochs=30,
        patience=2,
        early_stopping="val_uno_c",
        lr_schedule="cosine",
        gradient_clip_val=0.5,
        accelerator="cpu",
        seed=0,
    ).fit(cohort)
    history = model.history_
    frame = history.to_frame()
    assert list(frame.columns) == ["train_loss", "val_loss", "val_uno_c"]
    assert history.stopped_early and len(frame) < 30
    # the kept weights are the best Uno C epoch's
    assert history.best_epoch == int(np.nanargmax(history.val_uno_c))
    assert len(frame) == history.best_epoch + 1 + 2  # patience 2 after the best


def test_progress_bar_is_lightnings(capsys):
    DeepSurv(hidden=(4,), max_epochs=1, accelerator="cpu", progress=True).fit(
        clinical_cohort(200, seed=1)
    )
    shown = capsys.readouterr()
    assert "Epoch 0" in shown.out + shown.err
    DeepSurv(hidden=(4,), max_epochs=1, accelerator="cpu").fit(clinical_cohort(200, seed=1))
    quiet = capsys.readouterr()
    assert "Epoch 0" not in quiet.out + quiet.err


def test_a_logger_that_is_not_installed_is_named(tmp_path):
    import importlib.util

    if importlib.util.find_spec("mlflow"):
        pytest.skip("mlflow is installed here")
    model = DeepSurv(hidden=(4,), max_epochs=1, logger="mlflow", checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="logger='mlflow' needs the mlflow package"):
        model.fit(clinical_cohort(200, seed=1))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer here
def test_survival_weight_zero_trains_on_the_dense_targets_alone():
    """The first stage of a two-stage model: the loss is the auxiliary loss only."""
    from fracrisk.encoders import FusionSurvivalNet
    from fracrisk.losses import auxiliary_loss
    from fracrisk.training import TrainingConfig
    from fracrisk.training.module import CoxLightningModule

    class Flat(torch.nn.Module):
        num_features = 4

        def forward(self, x):
            return x.flatten(1)[:, :4]

    torch.manual_seed(0)
    net = FusionSurvivalNet(Flat(), 1, head="cox_linear", auxiliary=["t"])
    net.set_auxiliary_scaling([0.0], [1.0])
    images, cov = torch.randn(6, 1, 2, 2), torch.randn(6, 1)
    target = torch.randn(6, 1)
    time, event = torch.rand(6) + 0.1, torch.tensor([1, 0, 1, 1, 0, 1])
    batch = (images, cov, target, time, event)
    stage_one = CoxLightningModule(net, TrainingConfig(), 1, [2.0], survival_weight=0.0)
    loss = stage_one.training_step(batch, 0)
    _, predicted = net.forward_with_auxiliary(images, cov)
    expected = auxiliary_loss(predicted, target, net.auxiliary_scale, torch.tensor([2.0]))
    torch.testing.assert_close(loss, expected)
    joint = CoxLightningModule(net, TrainingConfig(), 1, [2.0]).training_step(batch, 0)
    assert float(joint.detach()) > float(loss.detach())  # the Cox loss per event is > 0
    with pytest.raises(ValueError, match="needs auxiliary_weights"):
        CoxLightningModule(net, TrainingConfig(), 1, survival_weight=0.0)
    with pytest.raises(ValueError, match="survival_weight"):
        CoxLightningModule(net, TrainingConfig(), 1, [1.0], survival_weight=-1.0)
