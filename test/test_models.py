"""DRN family: exact reference parameter counts, reference layout, checkpoint formats."""
import pytest
import torch

from drn_perception.models.checkpoints import (
    CheckpointError,
    infer_arch,
    load_backbone,
    load_checkpoint,
    save_checkpoint,
)
from drn_perception.models.drn import ARCHS, build_drn
from drn_perception.models.segmentation import DRNSeg, bilinear_kernel

# Parameter counts of the authors' classification models (1000-class head).
REFERENCE_PARAMS = {
    "drn_a_50": 25_557_032,
    "drn_c_26": 21_126_584,
    "drn_c_42": 31_234_744,
    "drn_c_58": 41_591_608,
    "drn_d_22": 16_393_752,
    "drn_d_38": 26_501_912,
    "drn_d_54": 35_809_176,
    "drn_d_105": 54_801_304,
}


@pytest.mark.parametrize("arch", sorted(REFERENCE_PARAMS))
def test_parameter_count_equals_reference(arch):
    model = build_drn(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[arch]


def test_every_variant_is_covered():
    assert set(ARCHS) == set(REFERENCE_PARAMS)


@pytest.mark.parametrize("arch", ["drn_c_26", "drn_d_22", "drn_a_50"])
def test_output_stride_8_and_channels(arch):
    model = DRNSeg(arch, num_classes=5, width=0.25 if arch != "drn_a_50" else 0.125).eval()
    with torch.no_grad():
        feats = model.base(torch.zeros(1, 3, 64, 96))
        logits = model(torch.zeros(1, 3, 64, 96))
    assert feats.shape[2:] == (8, 12)
    assert logits.shape == (1, 5, 64, 96)
    full = build_drn(arch)
    assert full.out_dim == (2048 if arch == "drn_a_50" else 512)


def test_drn_c_structure_matches_paper():
    m = build_drn("drn_c_26")
    assert not any(isinstance(c, torch.nn.MaxPool2d) for c in m.modules())
    dil = {i: getattr(m, f"layer{i}")[-1].conv2.dilation[0] for i in range(1, 9)}
    assert dil == {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 4, 7: 2, 8: 1}
    strides = {i: getattr(m, f"layer{i}")[0].conv1.stride[0] for i in range(1, 9)}
    assert strides == {1: 1, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: 1}
    # Degridding levels have no residual connections.
    assert not m.layer7[0].residual and not m.layer8[0].residual and m.layer6[0].residual


def test_reference_segmentation_key_layout():
    """Names the authors' segmentation checkpoints use: base.<i>, seg.*, up.weight."""
    c = DRNSeg("drn_c_26", 19).state_dict()
    assert {"base.0.weight", "base.1.running_mean", "base.3.0.conv1.weight", "base.10.0.bn2.weight",
            "seg.weight", "seg.bias", "up.weight"} <= c.keys()
    assert tuple(c["up.weight"].shape) == (19, 1, 16, 16)
    d = DRNSeg("drn_d_22", 19).state_dict()
    assert {"base.0.0.weight", "base.1.0.weight", "base.8.0.weight"} <= d.keys()


def test_bilinear_up_kernel_interpolates():
    k = bilinear_kernel(16)
    assert torch.allclose(k, k.T) and k.max() <= 1 and k.min() > 0
    # A constant coarse map upsamples to the same constant away from the border.
    m = DRNSeg("drn_c_26", 2, width=0.25)
    with torch.no_grad():
        y = m.up(torch.ones(1, 2, 6, 6))
    assert y.shape[2:] == (48, 48)
    assert torch.allclose(y[:, :, 8:-8, 8:-8], torch.ones(1), atol=1e-6)


def test_width_one_is_reference_and_width_scales():
    assert sum(p.numel() for p in build_drn("drn_c_26", width=1.0).parameters()) == REFERENCE_PARAMS["drn_c_26"]
    small = build_drn("drn_c_26", width=0.25)
    assert small.conv1.out_channels == 4 and small.out_dim == 128
    with pytest.raises(ValueError, match="unknown DRN architecture"):
        build_drn("drn_x_1")


def _labels(model, x):
    with torch.no_grad():
        return model.eval()(x).argmax(1)


def test_authors_segmentation_checkpoint_loads_and_reproduces(tmp_path):
    torch.manual_seed(0)
    ref = DRNSeg("drn_d_22", 19).eval()
    for m in ref.modules():  # non-trivial BN statistics, as in a trained model
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    # As saved by the authors' training script: DataParallel prefix, inside a dict.
    wrapped = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "arch": "drn_d_22", "best_prec1": 0.5,
                "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, wrapped)
    # As released: a bare state_dict, architecture recognised from the tensors.
    bare = tmp_path / "drn_d_22_cityscapes.pth"
    torch.save(ref.state_dict(), bare)
    for path in (wrapped, bare):
        model, info = load_checkpoint(path)
        assert info["arch"] == "drn_d_22" and info["num_classes"] == 19
        assert torch.equal(_labels(model, x), _labels(ref, x))


def test_infer_arch_distinguishes_variants():
    for arch in ("drn_c_26", "drn_c_42", "drn_d_38"):
        assert infer_arch(DRNSeg(arch, 3).state_dict(), "base.") == arch


def test_imagenet_checkpoint_initialises_backbone(tmp_path):
    cls = build_drn("drn_c_26")
    path = tmp_path / "drn_c_26-imagenet.pth"
    torch.save(cls.state_dict(), path)
    seg = DRNSeg("drn_c_26", 19)
    load_backbone(seg, path)
    assert torch.equal(seg.base[0].weight, cls.conv1.weight)
    assert torch.equal(seg.base[10][0].conv2.weight, cls.layer8[0].conv2.weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_backbone(DRNSeg("drn_d_22", 19), path)


def test_own_checkpoint_round_trip_is_weights_only(tmp_path):
    model = DRNSeg("drn_c_26", 3, width=0.25)
    info = {"arch": "drn_c_26", "width": 0.25, "classes": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3}
    path = save_checkpoint(tmp_path / "m.pt", model, info, epoch=2)
    loaded, got = load_checkpoint(path)
    assert got["classes"] == ["a", "b", "c"] and got["width"] == 0.25
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not list(tmp_path.glob(".m.pt.*"))  # no temporary file left behind


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(junk)
    cls = tmp_path / "cls.pth"
    torch.save(build_drn("drn_c_26", width=0.25).state_dict(), cls)
    with pytest.raises(CheckpointError, match="not a segmentation checkpoint"):
        load_checkpoint(cls)
