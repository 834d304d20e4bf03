"""DRN family: exact reference parameter counts, reference layout, checkpoint formats."""
import re
import shlex
import subprocess
import sys

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
    "drn_d_24": 21_114_392,
    "drn_d_38": 26_501_912,
    "drn_d_40": 31_222_552,
    "drn_d_54": 35_809_176,
    "drn_d_56": 40_529_816,
    "drn_d_105": 54_801_304,
    "drn_d_107": 59_521_944,
}


@pytest.mark.parametrize("arch", sorted(REFERENCE_PARAMS))
def test_parameter_count_equals_reference(arch):
    model = build_drn(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[arch]


def test_every_variant_is_covered():
    assert set(ARCHS) == set(REFERENCE_PARAMS) and len(ARCHS) == 12


def test_two_block_degridding_variants():
    """D-24/40/56/107: the D layout with two conv layers in levels 7 and 8 (dilation 2, 1)."""
    for arch, base in (("drn_d_24", "drn_d_22"), ("drn_d_40", "drn_d_38"), ("drn_d_56", "drn_d_54"),
                       ("drn_d_107", "drn_d_105")):
        with torch.device("meta"):  # structure only
            m, b = build_drn(arch), build_drn(base)
        convs = [c for c in m.layer7 if isinstance(c, torch.nn.Conv2d)]
        assert [c.dilation[0] for c in convs] == [2, 2]
        assert [c.dilation[0] for c in m.layer8 if isinstance(c, torch.nn.Conv2d)] == [1, 1]
        assert len(m.layer5) == len(b.layer5) and len(b.layer7) == 3  # one conv+bn+relu in the base variant


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
    # As written by the authors' PyTorch < 0.4: no BatchNorm num_batches_tracked tensors, no
    # _metadata versions, the legacy (non-zip) serialisation; resume dict without 'arch'.
    old_state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(old_state) < len(ref.state_dict())
    pre04 = tmp_path / "pre04.pth"
    torch.save(old_state, pre04, _use_new_zipfile_serialization=False)
    pre04_dp = tmp_path / "pre04_resume.pth.tar"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in old_state.items()}, "best_prec1": 0.1},
               pre04_dp, _use_new_zipfile_serialization=False)
    with torch.no_grad():
        expected = ref(x)
    for path in (wrapped, bare, pre04, pre04_dp):
        model, info = load_checkpoint(path)
        assert info["arch"] == "drn_d_22" and info["num_classes"] == 19
        with torch.no_grad():
            assert torch.equal(model(x), expected)  # same weights and statistics, bit for bit


@pytest.mark.parametrize("arch", ["drn_c_26", "drn_c_42", "drn_d_22", "drn_d_24", "drn_d_38", "drn_d_40"])
def test_infer_arch_distinguishes_variants(arch):
    state = DRNSeg(arch, 3).state_dict()
    assert infer_arch(state, "base.") == arch
    assert infer_arch({k: v for k, v in state.items() if "num_batches_tracked" not in k}, "base.") == arch
    assert infer_arch(build_drn(arch).state_dict()) == arch  # classification layout


def test_imagenet_checkpoint_initialises_backbone(tmp_path):
    torch.manual_seed(1)
    cls = build_drn("drn_c_26")
    with torch.no_grad():
        cls.bn1.running_mean.uniform_(-0.1, 0.1)
    old = {k: v for k, v in cls.state_dict().items() if not k.endswith("num_batches_tracked")}
    layouts = {  # every layout the authors' classify.py / model zoo writes
        "drn_c_26-ddedf421.pth": cls.state_dict(),
        "pre04.pth": old,
        "checkpoint_latest.pth.tar": {"epoch": 90, "arch": "drn_c_26", "best_prec1": torch.tensor(75.0),
                                      "state_dict": {f"module.{k}": v for k, v in old.items()}},
    }
    for name, obj in layouts.items():
        path = tmp_path / name
        torch.save(obj, path, _use_new_zipfile_serialization=name != "pre04.pth")
        seg = DRNSeg("drn_c_26", 19)
        load_backbone(seg, path)
        assert torch.equal(seg.base[0].weight, cls.conv1.weight)
        assert torch.equal(seg.base[1].running_mean, cls.bn1.running_mean)
        assert torch.equal(seg.base[10][0].conv2.weight, cls.layer8[0].conv2.weight)
    with pytest.raises(CheckpointError, match=r"does not fit the drn_d_22 backbone: \d+ missing: layer0\.0\.weight.*"
                                              r"\d+ unexpected: conv1\.weight.*\(the file holds drn_c_26\)"):
        load_backbone(DRNSeg("drn_d_22", 19), tmp_path / "pre04.pth")


def test_segmentation_checkpoint_as_backbone_points_to_init(tmp_path):
    path = tmp_path / "drn_c_26_cityscapes.pth"
    torch.save(DRNSeg("drn_c_26", 19, width=0.25).state_dict(), path)
    with pytest.raises(CheckpointError, match="segmentation checkpoint.*--init instead of --pretrained"):
        load_backbone(DRNSeg("drn_c_26", 19), path)


def test_misfit_lists_missing_unexpected_and_wrong_shape_keys(tmp_path):
    state = DRNSeg("drn_c_26", 19).state_dict()
    state["base.0.weight"] = torch.zeros(16, 3, 5, 5)
    del state["base.10.0.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, arch="drn_c_26")
    msg = str(err.value)
    assert "1 missing: base.10.0.bn2.weight" in msg and "1 unexpected: extra.weight" in msg
    assert "1 wrong shape (file vs model): base.0.weight [16, 3, 5, 5] vs [16, 3, 7, 7]" in msg
    assert "\n" not in msg
    # A long list is counted, with the first few named.
    big = tmp_path / "d22.pt"
    torch.save(DRNSeg("drn_d_22", 3).state_dict(), big)
    with pytest.raises(CheckpointError, match=r"does not fit drn_c_26: \d\d+ missing: base\.0\.weight, .*, \.\.\. \d+ more"):
        load_checkpoint(big, arch="drn_c_26")


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


def test_pickled_code_is_refused_without_inviting_to_run_it(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert re.search(r"holds pickled Python code \(\S*print\), not only tensors, and will not be loaded", msg)
    assert "likely succeed" not in msg and "\n" not in msg and "code ran" not in capsys.readouterr().out
    # The conversion it suggests works on a trusted file, and the copy then loads.
    trusted = tmp_path / "trusted.pth"
    state = DRNSeg("drn_d_22", 4).state_dict()
    torch.save({"state_dict": state, "args": _Payload()}, trusted)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(trusted)
    command = str(err.value).split("python -c ")[1]
    subprocess.run([sys.executable, "-c", shlex.split(command)[0]], check=True, capture_output=True)
    model, info = load_checkpoint(tmp_path / "trusted.weights.pth")
    assert info["arch"] == "drn_d_22" and info["num_classes"] == 4


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*: not a PyTorch checkpoint file") as err:
        load_checkpoint(junk)
    assert "weights_only" not in str(err.value)
    cls = tmp_path / "cls.pth"
    torch.save(build_drn("drn_c_26", width=0.25).state_dict(), cls)
    with pytest.raises(CheckpointError, match="not a segmentation checkpoint: .*classification.*--pretrained"):
        load_checkpoint(cls)
