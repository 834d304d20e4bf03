"""Dataset readers on small generated folders (list layout and native Cityscapes layout),
the reference augmentation, and the synthetic-scene dataset."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from drn_perception.data.cityscapes import (
    CITYSCAPES_MEAN,
    DatasetError,
    cityscapes_dataset,
    detect_layout,
    list_dataset,
)
from drn_perception.data.synthetic import SYNTHETIC_CLASS_IDS, generate_scene
from drn_perception.data.synthetic_dataset import SPLIT_SEEDS, SyntheticScenes
from drn_perception.data.transforms import RandomCrop, RandomRotate, RandomScale, training_transform

H, W = 48, 64


def scene(seed):
    return generate_scene(seed, H, W)


def write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_label(path, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label)


@pytest.fixture
def list_root(tmp_path):
    root = tmp_path / "lists"
    (root / "images").mkdir(parents=True)
    images, labels = [], []
    for i in range(3):
        rgb, lab = scene(i)
        write_rgb(root / "images" / f"{i}.png", rgb)
        write_label(root / "labels" / f"{i}.png", lab)
        images.append(f"images/{i}.png")
        labels.append(f"labels/{i}.png")
    (root / "info.json").write_text(json.dumps({"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}))
    (root / "train_images.txt").write_text("\n".join(images) + "\n")
    (root / "train_labels.txt").write_text("\n".join(labels) + "\n")
    return root


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    for i, city in enumerate(["aachen", "aachen", "bremen"]):
        rgb, lab = scene(10 + i)
        name = f"{city}_{i:06d}_000019"
        write_rgb(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", rgb)
        write_label(root / "gtFine" / "val" / city / f"{name}_gtFine_labelTrainIds.png", lab)
    return root


def test_list_layout_reads_pairs_in_order(list_root):
    ds = list_dataset(list_root, "train")
    assert len(ds) == 3 and detect_layout(list_root, "train") == "list"
    assert ds.mean == [0.1, 0.2, 0.3] and ds.std == [0.4, 0.5, 0.6]
    for i in range(3):
        image, label = ds[i]
        rgb, lab = scene(i)
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        np.testing.assert_array_equal(image, rgb)  # PNG is lossless; RGB order kept
        np.testing.assert_array_equal(label, lab)


def test_cityscapes_layout_pairs_images_with_trainid_labels(cityscapes_root):
    ds = cityscapes_dataset(cityscapes_root, "val")
    assert len(ds) == 3 and detect_layout(cityscapes_root, "val") == "cityscapes"
    assert list(ds.mean) == list(CITYSCAPES_MEAN)
    names = [p.name for p in ds.images]
    assert names == sorted(names)
    for image_path, label_path in zip(ds.images, ds.labels):
        assert label_path.name == image_path.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
    image, label = ds[2]
    rgb, lab = scene(12)
    np.testing.assert_array_equal(image, rgb)
    np.testing.assert_array_equal(label, lab)


def test_bad_list_line_names_file_and_line(list_root):
    lines = (list_root / "train_images.txt").read_text().splitlines()
    lines[1] = "images/1.png images/2.png"
    (list_root / "train_images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"train_images\.txt:2: expected one file path per line"):
        list_dataset(list_root, "train")


def test_missing_listed_file_is_named(list_root):
    (list_root / "labels" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"train_labels\.txt:3: file not found: .*labels/2\.png"):
        list_dataset(list_root, "train")


def test_label_of_wrong_size_is_named(list_root):
    write_label(list_root / "labels" / "1.png", np.zeros((H - 8, W), np.uint8))
    ds = list_dataset(list_root, "train")
    ds[0]
    with pytest.raises(DatasetError, match=r"label .*labels/1\.png is 64x40 but its image .*images/1\.png is 64x48"):
        ds[1]


def test_colour_label_and_unreadable_image_are_named(list_root):
    colour = np.zeros((H, W, 3), np.uint8)
    colour[..., 1] = 7
    cv2.imwrite(str(list_root / "labels" / "0.png"), colour)
    (list_root / "images" / "2.png").write_bytes(b"not a png")
    ds = list_dataset(list_root, "train")
    with pytest.raises(DatasetError, match=r"label .*labels/0\.png has 3 channels"):
        ds[0]
    with pytest.raises(DatasetError, match=r"cannot read image .*images/2\.png: not a readable image"):
        ds[2]


def test_bad_info_json_and_mismatched_lists(list_root):
    (list_root / "train_labels.txt").write_text("labels/0.png\n")
    with pytest.raises(DatasetError, match="train_labels.txt names 1 files but train_images.txt names 3"):
        list_dataset(list_root, "train")
    (list_root / "info.json").write_text('{"mean": [0.5]}')
    with pytest.raises(DatasetError, match="info.json must hold"):
        list_dataset(list_root, "train")


def test_cityscapes_missing_label_is_named(cityscapes_root):
    victim = next((cityscapes_root / "gtFine" / "val" / "bremen").iterdir())
    victim.unlink()
    with pytest.raises(DatasetError, match=f"label .*{victim.name} not found for .*bremen_000002_000019_leftImg8bit"):
        cityscapes_dataset(cityscapes_root, "val")
    with pytest.raises(DatasetError, match="leftImg8bit/train"):
        cityscapes_dataset(cityscapes_root, "train")


def test_augmentation_pads_reflecting_image_and_255_labels():
    rgb, lab = scene(3)
    rng = np.random.default_rng(0)
    image, label = RandomCrop((H + 20, W + 30))(rgb, lab, rng)
    assert image.shape == (H + 20, W + 30, 3) and label.shape == (H + 20, W + 30)
    np.testing.assert_array_equal(label[10:10 + H, 15:15 + W], lab)
    assert np.all(label[:10] == 255) and np.all(label[:, :15] == 255)
    np.testing.assert_array_equal(image[10:10 + H, 15:15 + W], rgb)
    np.testing.assert_array_equal(image[9], rgb[1, :][np.r_[15:0:-1, 0:W, W - 2:W - 17:-1]])  # reflection

    seed = next(s for s in range(100) if abs(np.random.default_rng(s).uniform(-30, 30)) > 15)
    image, label = RandomRotate(30)(rgb, lab, np.random.default_rng(seed))
    assert np.any(label == 255)  # corners rotated in are ignored
    assert set(np.unique(label)) <= set(np.unique(lab)) | {255}
    image, label = RandomScale(2)(rgb, lab, np.random.default_rng(2))
    assert image.shape[:2] == label.shape and set(np.unique(label)) <= set(np.unique(lab))


def test_training_samples_are_reproducible_per_seed_epoch_index():
    t = training_transform((32, 40), random_scale=2, random_rotate=10)
    a = SyntheticScenes("train", 4, H, W, transform=t, seed=5)
    b = SyntheticScenes("train", 4, H, W, transform=t, seed=5)
    for x, y in zip(a[2], b[2]):
        np.testing.assert_array_equal(x, y)
    assert a[2][0].shape == (32, 40, 3) and a[2][1].shape == (32, 40)
    first = a[2][0]
    a.set_epoch(1)
    assert not np.array_equal(first, a[2][0])


def test_synthetic_splits_are_disjoint_and_cache_matches(tmp_path):
    train = SyntheticScenes("train", 3, H, W)
    val = SyntheticScenes("val", 3, H, W)
    test = SyntheticScenes("test", 3, H, W)
    assert not set(train.seeds()) & set(val.seeds()) and not set(val.seeds()) & set(test.seeds())
    assert val.seeds()[0] == SPLIT_SEEDS["val"]
    cached = SyntheticScenes("val", 3, H, W, cache=tmp_path, workers=2)
    again = SyntheticScenes("val", 3, H, W, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    for i in range(3):
        rgb, lab = generate_scene(SPLIT_SEEDS["val"] + i, H, W)
        for ds in (val, cached, again):
            np.testing.assert_array_equal(ds[i][0], rgb)
            np.testing.assert_array_equal(ds[i][1], lab)
    assert set(np.unique(val[0][1])) <= set(SYNTHETIC_CLASS_IDS)
    with pytest.raises(ValueError, match="unknown synthetic split"):
        SyntheticScenes("holdout", 3, H, W)


# ---------------------------------------------------------------------------------------------
# Cityscapes label files: trainIds, native labelIds read through the official table, and
# labelIds given where trainIds are expected


def official_label_files(tmp_path, name, seed, h=H, w=W):
    """A polygon annotation over every Cityscapes label (groups, a license plate, a deleted
    polygon), rendered by cityscapesScripts' own json2labelImg (the function behind
    createTrainIdLabelImgs) as labelIds and as trainIds: (labelIds, trainIds) arrays."""
    labels_mod = pytest.importorskip("cityscapesscripts.helpers.labels")
    json2label = pytest.importorskip("cityscapesscripts.preparation.json2labelImg")
    rng = np.random.default_rng(seed)
    names = [lab.name for lab in labels_mod.labels] + ["cargroup", "persongroup"]
    objects = []
    for label in rng.permutation(names):
        x, y = rng.integers(0, w), rng.integers(0, h)
        pw, ph = rng.integers(4, w // 2), rng.integers(4, h // 2)
        objects.append({"label": str(label), "polygon": [[int(x), int(y)], [int(x + pw), int(y)],
                                                         [int(x + pw // 2), int(y + ph)]]})
    objects.append({"label": "sky", "polygon": [[0, 0], [w, 0], [w, h]], "deleted": 1})
    ann = tmp_path / f"{name}_gtFine_polygons.json"
    ann.write_text(json.dumps({"imgWidth": w, "imgHeight": h, "objects": objects}))
    ids, train_ids = tmp_path / f"{name}_ids.png", tmp_path / f"{name}_train_ids.png"
    json2label.json2labelImg(str(ann), str(ids), "ids")
    json2label.json2labelImg(str(ann), str(train_ids), "trainIds")
    return cv2.imread(str(ids), cv2.IMREAD_UNCHANGED), cv2.imread(str(train_ids), cv2.IMREAD_UNCHANGED)


def test_the_id_to_train_id_table_is_the_official_one():
    from drn_perception.data.cityscapes import CITYSCAPES_LABEL_IDS, TRAIN_ID_LUT

    labels_mod = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = {lab.id: lab.trainId for lab in labels_mod.labels if lab.id >= 0}
    assert sorted(official) == list(range(CITYSCAPES_LABEL_IDS))
    assert {i: int(TRAIN_ID_LUT[i]) for i in range(CITYSCAPES_LABEL_IDS)} == official


def test_native_label_ids_give_the_official_train_ids(tmp_path):
    """A Cityscapes folder as unpacked from gtFine_trainvaltest.zip (only *_labelIds.png) reads
    as the trainIds createTrainIdLabelImgs would write, in both layouts and with auto detection."""
    root = tmp_path / "cityscapes"
    want = []
    for i, city in enumerate(["aachen", "bochum", "bochum"]):
        name = f"{city}_{i:06d}_000019"
        ids, train_ids = official_label_files(tmp_path, name, seed=i)
        assert ids.max() > 18 and set(np.unique(ids)) - set(range(34)) == set()  # raw ids, as shipped
        write_rgb(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", scene(i)[0])
        write_label(root / "gtFine" / "val" / city / f"{name}_gtFine_labelIds.png", ids)
        want.append(train_ids)
    for ds in (cityscapes_dataset(root, "val", num_classes=19),
               cityscapes_dataset(root, "val", labels="labelIds")):
        assert ds.labels_kind == "labelIds" and all(p.name.endswith("_gtFine_labelIds.png") for p in ds.labels)
        for i in range(3):
            np.testing.assert_array_equal(ds[i][1], want[i])
    # The list layout: files named *_labelIds.png are read the same way.
    (root / "info.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3}))
    ds = cityscapes_dataset(root, "val")
    (root / "val_images.txt").write_text("".join(f"{p.relative_to(root)}\n" for p in ds.images))
    (root / "val_labels.txt").write_text("".join(f"{p.relative_to(root)}\n" for p in ds.labels))
    listed = list_dataset(root, "val", num_classes=19)
    assert listed.labels_kind == "labelIds"
    for i in range(3):
        np.testing.assert_array_equal(listed[i][1], want[i])
    # Where trainId files exist too, auto reads those (the same values).
    for image, train_ids in zip(ds.images, want):
        write_label(root / "gtFine" / "val" / image.parent.name /
                    image.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"), train_ids)
    ds = cityscapes_dataset(root, "val", num_classes=19)
    assert ds.labels_kind == "trainIds"
    for i in range(3):
        np.testing.assert_array_equal(ds[i][1], want[i])


def test_label_ids_given_as_train_ids_are_refused_naming_the_file_and_the_fix(list_root):
    raw = np.full((H, W), 7, np.uint8)  # road as a Cityscapes label id
    raw[:, W // 2:] = 26  # car
    write_label(list_root / "labels" / "1.png", raw)
    with pytest.raises(DatasetError, match=r"label .*labels/1\.png holds ids 26 outside 0\.\.18 .*createTrainIdLabelImgs"
                                           r".*--labels labelIds"):
        list_dataset(list_root, "train", num_classes=19)  # found in the sample read when the dataset opens
    ds = list_dataset(list_root, "train")  # without num_classes nothing is checked
    np.testing.assert_array_equal(ds[1][1], raw)
    # Ids all < 19 (road 7, sidewalk 8) pass a value check: --labels labelIds reads them as the
    # official table says; a trainId file (255 = ignore is no label id) read that way is refused.
    low = np.full((H, W), 7, np.uint8)
    low[: H // 2] = 8
    write_label(list_root / "labels" / "1.png", low)
    lab = scene(0)[1].copy()
    lab[0, 0] = 255
    write_label(list_root / "labels" / "0.png", lab)
    ds = list_dataset(list_root, "train", labels="labelIds")
    with pytest.raises(DatasetError, match=r"labels/0\.png was read as Cityscapes labelIds \(0\.\.33\) but holds 255: "
                                           r"if it holds trainIds, pass --labels trainIds"):
        ds[0]
    np.testing.assert_array_equal(ds[1][1], np.where(low == 7, 0, 1))


def test_every_label_is_checked_when_read_not_only_the_sample(tmp_path):
    from drn_perception.data.cityscapes import SAMPLE_FILES

    root = tmp_path / "lists"
    n = 3 * SAMPLE_FILES
    for i in range(n):
        rgb, lab = scene(i % 3)
        write_rgb(root / "images" / f"{i}.png", rgb)
        write_label(root / "labels" / f"{i}.png", lab)
    (root / "info.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3}))
    (root / "train_images.txt").write_text("".join(f"images/{i}.png\n" for i in range(n)))
    (root / "train_labels.txt").write_text("".join(f"labels/{i}.png\n" for i in range(n)))
    sampled = {int(i) for i in np.linspace(0, n - 1, SAMPLE_FILES).round()}
    victim = min(set(range(n)) - sampled)
    write_label(root / "labels" / f"{victim}.png", np.full((H, W), 33, np.uint8))
    ds = list_dataset(root, "train", num_classes=19)  # the sample passes
    with pytest.raises(DatasetError, match=rf"label .*labels/{victim}\.png holds ids 33 outside"):
        ds[victim]


def test_the_cache_fingerprint_covers_every_module_of_the_generator():
    """Cached scenes are keyed by a hash of the generator's modules: every package module the
    generator imports must be hashed, or a change there would reuse stale scenes."""
    import ast
    import importlib

    from drn_perception.data.synthetic_dataset import GENERATOR_MODULES, generator_fingerprint

    seen, todo = set(), ["drn_perception.data.synthetic"]
    while todo:
        name = todo.pop()
        seen.add(name)
        tree = ast.parse(Path(importlib.import_module(name).__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drn_perception"):
                if node.module not in seen:
                    todo.append(node.module)
    assert seen <= set(GENERATOR_MODULES), seen - set(GENERATOR_MODULES)
    assert len(generator_fingerprint()) == 12
