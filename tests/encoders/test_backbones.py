"""timm backbones: pooled features of the declared size, never pretrained, never downloaded."""

from __future__ import annotations

import socket

import pytest
import torch

from fracrisk.encoders import DEFAULT_BACKBONE, ImageBackbone, create_backbone


@pytest.mark.parametrize("name", ["resnet10t", "resnet18", "densenet121"])
def test_pretrained_true_is_refused(name):
    with pytest.raises(ValueError, match="pretrained=True is not supported.*never downloads"):
        create_backbone(name, pretrained=True)


@pytest.mark.parametrize(
    "option, value",
    [
        pytest.param("checkpoint_path", "weights.pth", id="checkpoint_path"),
        pytest.param("pretrained_cfg", {}, id="pretrained_cfg"),
        pytest.param("pretrained_cfg_overlay", {"file": "w.bin"}, id="pretrained_cfg_overlay"),
        pytest.param("num_classes", 2, id="num_classes"),
    ],
)
def test_refused_options(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' is not accepted"):
        create_backbone("resnet10t", **{option: value})


def test_unknown_timm_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'.*list_models"):
        create_backbone("resnet_nope")


@pytest.mark.parametrize("in_chans", [0, -1, 1.5])
def test_in_chans_must_be_a_positive_integer(in_chans):
    with pytest.raises(ValueError, match="in_chans must be a positive integer"):
        create_backbone("resnet10t", in_chans)


@pytest.mark.parametrize(
    "name, in_chans, expected",
    [
        pytest.param("resnet10t", 1, 512, id="resnet10t"),
        # timm's num_features is 576 here; the pooled output has head_hidden_size = 1024.
        pytest.param("mobilenetv3_small_100", 1, 1024, id="mobilenetv3-head-hidden-size"),
        pytest.param("convnext_atto", 3, 320, id="convnext_atto-3-channels"),
    ],
)
def test_output_has_num_features_columns(name, in_chans, expected):
    torch.manual_seed(0)
    backbone = create_backbone(name, in_chans).eval()
    assert isinstance(backbone, ImageBackbone)
    assert backbone.num_features == expected
    with torch.no_grad():
        out = backbone(torch.randn(2, in_chans, 32, 32))
    assert out.shape == (2, expected)
    assert torch.isfinite(out).all()


def test_default_backbone_is_small_single_channel_resnet10t():
    backbone = create_backbone()
    assert DEFAULT_BACKBONE == "resnet10t" and backbone.name == "resnet10t"
    first_conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    assert sum(p.numel() for p in backbone.parameters()) < 6_000_000


def test_timm_options_are_forwarded():
    backbone = create_backbone("resnet10t", drop_rate=0.25, global_pool="max")
    assert backbone.model.drop_rate == 0.25
    x = torch.randn(2, 1, 32, 32)
    backbone.eval()
    with torch.no_grad():
        assert torch.equal(backbone(x), backbone.model(x))
        assert backbone(x).shape == (2, 512)


def test_building_backbones_opens_no_network_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a backbone tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("resnet18", "densenet121", "efficientnet_b0"):
        assert create_backbone(name).num_features > 0


def test_a_backbone_starts_from_a_local_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    from fracrisk.encoders import create_backbone

    # A user's RGB resnet10t with a 1000-class classifier, saved as safetensors ...
    torch.manual_seed(1)
    theirs = timm.create_model("resnet10t", pretrained=False, in_chans=3)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    ours = create_backbone("resnet10t", 1, weights=path)
    # ... its classifier is dropped and its RGB stem summed to one channel, as timm does.
    stem = "conv1.0.weight"
    expected = theirs.state_dict()[stem].sum(dim=1, keepdim=True)
    assert torch.equal(ours.model.state_dict()[stem], expected)
    for key, value in ours.model.state_dict().items():
        if key != stem:
            assert torch.equal(value, theirs.state_dict()[key]), key
    # a torch checkpoint is read with weights_only=True, also under "state_dict"
    pt = tmp_path / "resnet10t.pt"
    torch.save({"state_dict": theirs.state_dict()}, pt)
    again = create_backbone("resnet10t", 1, weights=pt)
    assert torch.equal(again.model.state_dict()[stem], expected)


def test_local_weights_that_do_not_fit_are_refused_by_name(tmp_path):
    import timm
    from safetensors.torch import save_file

    from fracrisk.encoders import create_backbone

    other = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(ValueError, match=r"do not fit this ResNet: unexpected tensor 'layer1\.1\."):
        create_backbone("resnet10t", 1, weights=path)
    with pytest.raises(FileNotFoundError, match="not found"):
        create_backbone("resnet10t", 1, weights=tmp_path / "absent.safetensors")

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": Payload()}}, evil)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        create_backbone("resnet10t", 1, weights=evil)
