"""Confusion matrix, IoU and mIoU against direct pixel counting."""
import numpy as np
import pytest

from drn_perception.training.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    format_table,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
)


def random_pair(rng, shape=(2, 17, 23), num_classes=5, ignore_share=0.1):
    target = rng.integers(0, num_classes, shape).astype(np.uint8)
    target[rng.random(shape) < ignore_share] = 255
    pred = rng.integers(0, num_classes, shape)
    return pred, target


def test_confusion_matrix_counts_each_pixel_once_and_skips_255():
    rng = np.random.default_rng(0)
    pred, target = random_pair(rng)
    conf = confusion_matrix(pred, target, 5)
    expected = np.zeros((5, 5), np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != 255:
            expected[t, p] += 1
    np.testing.assert_array_equal(conf, expected)
    assert conf.sum() == int((target != 255).sum())


def test_iou_from_sets():
    rng = np.random.default_rng(1)
    pred, target = random_pair(rng, num_classes=4)
    iou = per_class_iou(confusion_matrix(pred, target, 4))
    keep = target != 255
    for c in range(4):
        inter = np.sum((pred == c) & (target == c) & keep)
        union = np.sum(((pred == c) | (target == c)) & keep)
        assert iou[c] == pytest.approx(inter / union)
    assert mean_iou(confusion_matrix(pred, target, 4)) == pytest.approx(iou.mean())


def test_absent_classes_are_left_out_and_false_positives_count_as_zero():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 3]])
    conf = confusion_matrix(pred, target, 4)
    iou = per_class_iou(conf)
    assert np.isnan(iou[2])  # neither present nor predicted
    assert iou[3] == 0.0  # predicted, never present
    assert mean_iou(conf) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert mean_iou(conf, classes=[0, 1, 2]) == pytest.approx(0.75)
    assert pixel_accuracy(conf) == pytest.approx(0.75)


def test_perfect_prediction_and_accumulation():
    rng = np.random.default_rng(2)
    acc = ConfusionMatrix(6)
    pairs = [random_pair(rng, (9, 11), 6) for _ in range(3)]
    for pred, target in pairs:
        acc.update(pred, target)
    whole = confusion_matrix(np.concatenate([p for p, _ in pairs]), np.concatenate([t for _, t in pairs]), 6)
    np.testing.assert_array_equal(acc.matrix, whole)
    target = pairs[0][1]
    clean = np.where(target == 255, 0, target)
    perfect = ConfusionMatrix(6)
    perfect.update(clean, target)
    present = np.unique(target[target != 255])
    assert perfect.miou() == 1.0
    assert np.all(perfect.iou()[present] == 1.0)


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match=r"labels \[7\] are outside 0..4"):
        confusion_matrix(np.zeros((1, 2)), np.array([[7, 255]]), 5)
    with pytest.raises(ValueError, match="predictions outside"):
        confusion_matrix(np.array([[9]]), np.array([[1]]), 5)


def test_table_lists_requested_classes():
    conf = confusion_matrix(np.array([[0, 1, 1]]), np.array([[0, 1, 2]]), 3)
    table = format_table(conf, ["road", "sidewalk", "building"], classes=[0, 1, 2])
    assert "| 0 | road | 1.0000 |" in table
    assert "| 2 | building | 0.0000 |" in table
    assert f"{mean_iou(conf, [0, 1, 2]):.4f}" in table.splitlines()[-1]
