"""Reference fidelity: our torch backend and our ONNX graph against an independent reference.

The reference below is written from the published layer table of the DRN paper (Yu, Koltun &
Funkhouser, CVPR 2017) and the layout of the authors' checkpoints (fyu/drn: ``base.<i>`` for
the backbone levels, ``seg`` the 1x1 classifier, ``up`` the fixed bilinear transposed
convolution). It uses none of drn_perception's model code: it makes its own seeded weights
under the authors' tensor names, computes with torch.nn.functional, and runs every frame at
its own size, as the authors' code does (stride-2 layers round up; the x8 up-sampled map is
cropped top-left to the frame). Our code must load the same file and give the same labels.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drn_perception.data.synthetic import generate_scene
from drn_perception.deploy.export import export_onnx
from drn_perception.inference import create_segmenter

# Levels 1..8 of DRN-C / DRN-D: output stride 8, dilation 2 and 4 in levels 5-6, degridding
# levels 7-8 at dilation 2 and 1 without residual connections.
STRIDE = (1, 2, 2, 2, 1, 1, 1, 1)
DILATION = (1, 1, 1, 1, 2, 4, 2, 1)
WIDTH = (16, 32, 64, 128, 256, 512, 512, 512)
# name: (family, block of levels 3-6, blocks (C) or convolutions (D, levels 1-2 and 7-8) per level)
TABLE = {
    "drn_c_26": ("C", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_22": ("D", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_24": ("D", "basic", (1, 1, 2, 2, 2, 2, 2, 2)),
    "drn_c_58": ("C", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
}
CITYSCAPES_MEAN, CITYSCAPES_STD = [0.290101, 0.328081, 0.286964], [0.182954, 0.186566, 0.184475]
CLASSES = 7
SIZES = [(128, 256), (125, 203), (97, 61), (8, 8)]


class Reference:
    """The authors' DRNSeg computed functionally from the layer table, on seeded weights."""

    def __init__(self, arch: str, seed: int):
        self.family, self.block, self.counts = TABLE[arch]
        self.gen = torch.Generator().manual_seed(seed)
        self.w: dict[str, torch.Tensor] = {}
        self.bn: dict[str, str] = {}  # conv name -> its BatchNorm's name
        self.steps = []  # ("conv", name, k, stride, dilation) or (block kind, name, stride, dilation, shortcut, residual)
        # Stem: 7x7 conv + BN + ReLU (C: base.0 conv1, base.1 bn1, base.2 relu; D: base.0 = layer0).
        stem = ("base.0", "base.1") if self.family == "C" else ("base.0.0", "base.0.1")
        self._conv(stem[0], 3, WIDTH[0], 7, stem[1])
        self.steps.append(("conv", stem[0], 7, 1, 1))
        index = 3 if self.family == "C" else 1  # base.<index> holds level 1
        cin = WIDTH[0]
        for level in range(8):
            c, n, s, d = WIDTH[level], self.counts[level], STRIDE[level], DILATION[level]
            for i in range(n):
                stride = s if i == 0 else 1
                if self.family == "D" and level in (0, 1, 6, 7):  # plain conv3x3 + BN + ReLU
                    name = f"base.{index}.{3 * i}"
                    self._conv(name, cin, c, 3, f"base.{index}.{3 * i + 1}")
                    self.steps.append(("conv", name, 3, stride, d))
                    cin = c
                    continue
                kind = "basic" if level in (0, 1, 6, 7) else self.block
                out = c * (4 if kind == "bottleneck" else 1)
                name = f"base.{index}.{i}"
                shortcut = i == 0 and (s != 1 or cin != out)  # 1x1 conv + BN on the skip path
                if shortcut:
                    self._conv(f"{name}.downsample.0", cin, out, 1, f"{name}.downsample.1")
                if kind == "basic":
                    self._conv(f"{name}.conv1", cin, c, 3, f"{name}.bn1")
                    self._conv(f"{name}.conv2", c, c, 3, f"{name}.bn2")
                else:
                    self._conv(f"{name}.conv1", cin, c, 1, f"{name}.bn1")
                    self._conv(f"{name}.conv2", c, c, 3, f"{name}.bn2")
                    self._conv(f"{name}.conv3", c, out, 1, f"{name}.bn3")
                # Degridding levels 7-8 have no residual connection (their shortcut, if any, is unused).
                self.steps.append((kind, name, stride, d, shortcut, level < 6))
                cin = out
            index += 1
        self.w["seg.weight"] = torch.randn(CLASSES, cin, 1, 1, generator=self.gen) * math.sqrt(2.0 / CLASSES)
        self.w["seg.bias"] = torch.rand(CLASSES, generator=self.gen) - 0.5
        # Fixed bilinear x8 up-sampling (16x16 kernel, stride 8, padding 4): the separable
        # triangle 1 - |i/f - c|, f = 8, c = (2f - 1 - f % 2) / 2f, in double, stored as float.
        f = 8
        centre = (2 * f - 1 - f % 2) / (2.0 * f)
        tri = torch.tensor([1 - abs(i / f - centre) for i in range(16)], dtype=torch.float64)
        self.w["up.weight"] = (tri[:, None] * tri[None, :]).float().expand(CLASSES, 1, 16, 16).contiguous()

    def _conv(self, name, cin, cout, k, bn):
        g = self.gen
        self.w[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2.0 / (k * k * cout))
        self.w[f"{bn}.weight"] = 0.5 + torch.rand(cout, generator=g)
        self.w[f"{bn}.bias"] = 0.2 * torch.randn(cout, generator=g)
        self.w[f"{bn}.running_mean"] = 0.2 * torch.randn(cout, generator=g)
        self.w[f"{bn}.running_var"] = 0.5 + torch.rand(cout, generator=g)
        self.bn[name] = bn

    def _cbr(self, x, name, stride=1, dilation=1, relu=True):
        weight = self.w[f"{name}.weight"]
        pad = dilation * (weight.shape[-1] // 2)  # "same" padding: 3 for the 7x7 stem, d for 3x3, 0 for 1x1
        x = F.conv2d(x, weight, None, stride, pad, dilation)
        b = self.bn[name]
        x = F.batch_norm(x, self.w[f"{b}.running_mean"], self.w[f"{b}.running_var"], self.w[f"{b}.weight"],
                         self.w[f"{b}.bias"], False, 0.0, 1e-5)
        return F.relu(x) if relu else x

    def logits(self, x):
        h, w = x.shape[-2:]
        for step in self.steps:
            if step[0] == "conv":
                _, name, _, stride, d = step
                x = self._cbr(x, name, stride, d)
                continue
            kind, name, stride, d, shortcut, residual = step
            skip = self._cbr(x, f"{name}.downsample.0", stride, relu=False) if shortcut else x
            if kind == "basic":
                y = self._cbr(x, f"{name}.conv1", stride, d)
                y = self._cbr(y, f"{name}.conv2", 1, d, relu=False)
            else:
                y = self._cbr(x, f"{name}.conv1")
                y = self._cbr(y, f"{name}.conv2", stride, d)
                y = self._cbr(y, f"{name}.conv3", relu=False)
            x = F.relu(y + skip if residual else y)
        x = F.conv2d(x, self.w["seg.weight"], self.w["seg.bias"])
        x = F.conv_transpose2d(x, self.w["up.weight"], None, stride=8, padding=4, groups=CLASSES)
        # Each stride-2 layer rounds up: the map covers 8*ceil(H/8) x 8*ceil(W/8), top-left aligned.
        assert x.shape[-2:] == (8 * math.ceil(h / 8), 8 * math.ceil(w / 8))
        return x[:, :, :h, :w]


def authors_input(image: np.ndarray) -> torch.Tensor:
    """The authors' ToTensor (HWC -> CHW, contiguous, /255) and Normalize (per channel)."""
    x = torch.from_numpy(image).permute(2, 0, 1).contiguous().float().div(255)
    for t, m, s in zip(x, torch.tensor(CITYSCAPES_MEAN), torch.tensor(CITYSCAPES_STD)):
        t.sub_(m).div_(s)
    return x[None]


def agreement(labels: np.ndarray, logits: torch.Tensor) -> float:
    """Fraction of pixels whose label is the reference's argmax."""
    expected = logits.argmax(1).numpy()
    assert labels.shape == expected.shape
    return float((labels == expected).mean())


def frames():
    rng = np.random.default_rng(3)
    for h, w in SIZES:
        yield (h, w), generate_scene(40 + h, max(h, 64), max(w, 64))[0][:h, :w].copy()
    yield (125, 203), rng.integers(0, 256, (125, 203, 3), dtype=np.uint8)  # noise: no scene prior


@pytest.fixture(scope="module", params=["drn_c_26", "drn_d_22"])
def case(request, tmp_path_factory):
    arch = request.param
    ref = Reference(arch, seed=11)
    path = tmp_path_factory.mktemp(arch) / f"{arch}_cityscapes.pth"  # as released: a bare state dict
    torch.save(ref.w, path)
    return arch, ref, path


def test_reference_layout_is_the_authors(case):
    """Our model loads the reference's file strictly by name, architecture recognised."""
    arch, ref, path = case
    seg = create_segmenter(path, "torch", "cpu")
    assert seg.info.arch == arch and seg.info.num_classes == CLASSES
    ours = seg.pipeline.model.state_dict()
    assert {k for k in ours if not k.endswith("num_batches_tracked")} == set(ref.w)


def test_torch_backend_logits_are_bit_identical_and_labels_equal(case):
    arch, ref, path = case
    seg = create_segmenter(path, "torch", "cpu")
    for (h, w), image in frames():
        with torch.no_grad():
            expected = ref.logits(authors_input(image))
            ours = seg.pipeline.logits(torch.from_numpy(image[None]))
        assert ours.shape == (1, CLASSES, h, w)
        assert torch.equal(ours, expected), f"{arch} {h}x{w}: max |diff| {(ours - expected).abs().max():.3g}"
        res = seg.infer(image, want_confidence=True)
        assert res.labels.shape == res.confidence.shape == (1, h, w)
        assert agreement(res.labels, expected) == 1.0
        if h > 8:
            assert len(np.unique(res.labels)) > 1  # not vacuous


def test_onnx_graph_labels_equal_reference_at_every_size(case, tmp_path):
    arch, ref, path = case
    onnx_path = export_onnx(path, tmp_path / f"{arch}.onnx", check=False)
    seg = create_segmenter(onnx_path, "onnxruntime", "cpu")
    for (h, w), image in frames():
        with torch.no_grad():
            expected = ref.logits(authors_input(image))
        # The graph itself returns input-size outputs (crop inside the graph), no padding pass.
        labels, confidence = seg.session.run(["labels", "confidence"], {"images": image[None]})
        assert labels.shape == confidence.shape == (1, h, w)
        assert np.array_equal(seg.infer(image).labels, labels)
        assert agreement(labels, expected) == 1.0, f"{arch} {h}x{w}"


@pytest.mark.parametrize("arch", ["drn_d_24", "drn_c_58"])
def test_other_layouts_match_the_reference(arch, tmp_path):
    """Two-conv degridding levels (D-24) and bottlenecks with an unused shortcut in level 7 (C-58)."""
    ref = Reference(arch, seed=5)
    path = tmp_path / f"{arch}.pth"
    torch.save(ref.w, path)
    seg = create_segmenter(path, "torch", "cpu")
    assert seg.info.arch == arch
    image = generate_scene(9, 64, 96)[0][:61, :97].copy()
    with torch.no_grad():
        assert torch.equal(seg.pipeline.logits(torch.from_numpy(image[None])), ref.logits(authors_input(image)))


def test_drn_eval_predictors_score_the_reference_labels(case, tmp_path):
    """drn-eval's two paths (checkpoint in PyTorch, exported graph) at odd sizes, single scale."""
    from drn_perception.training.evaluate import SegmenterPredictor, TorchPredictor

    arch, ref, path = case
    onnx_path = export_onnx(path, tmp_path / f"{arch}.onnx", check=False)
    predictors = [TorchPredictor(path, "cpu"), SegmenterPredictor(onnx_path, "onnxruntime", "cpu")]
    for (h, w), image in list(frames())[1:3]:  # 125x203, 97x61
        with torch.no_grad():
            expected = ref.logits(authors_input(image))
        for predict in predictors:
            assert agreement(np.asarray(predict(image, [1.0]))[None], expected) == 1.0, predict.describe
