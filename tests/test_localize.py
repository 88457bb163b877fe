"""Boxes and masks from maps (ki.localize) and their IoU against ground truth, on hand-made maps
whose answers are known."""

import cv2
import numpy as np
import pytest

import keras_interp as ki
from keras_interp.metrics import box_iou, localization_accuracy, mask_boxes, mask_iou


def test_threshold_keeps_the_largest_region_above_a_fraction_of_the_peak():
    m = np.zeros((1, 20, 30), np.float32)
    m[0, 2:6, 3:9] = 0.5  # the larger region above 20% of the peak (24 pixels)
    m[0, 12:14, 20:22] = 1.0  # the peak, a smaller region (4 pixels)
    m[0, 15:19, 0:30] = 0.1  # below 0.2 x 1.0: never kept
    found = ki.localize(m)
    expected = np.zeros((20, 30), bool)
    expected[2:6, 3:9] = True
    np.testing.assert_array_equal(found.masks[0], expected)
    np.testing.assert_array_equal(found.boxes[0], [2, 3, 6, 9])
    # A higher threshold drops the 0.5 region: the peak's region is the only one left.
    np.testing.assert_array_equal(ki.localize(m, threshold=0.6).boxes[0], [12, 20, 14, 22])
    # Diagonal neighbours connect (8-connectivity).
    d = np.zeros((1, 5, 5), np.float32)
    d[0, [0, 1, 2], [0, 1, 2]] = 1.0
    np.testing.assert_array_equal(ki.localize(d).boxes[0], [0, 0, 3, 3])


def test_a_map_that_marks_nothing_gives_an_empty_region_and_box():
    maps = np.stack([np.zeros((8, 8)), -np.ones((8, 8)), np.full((8, 8), 3.0)]).astype(np.float32)
    found = ki.localize(maps)
    assert not found.masks.any() and not found.boxes.any()


def test_iou_against_hand_computed_values():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]])
    truth = np.array([[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(boxes, truth), [1.0, 50 / 150, 0.0, 0.0])
    assert localization_accuracy(boxes, truth) == 0.25
    assert localization_accuracy(boxes, truth, at=0.3) == 0.5
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared
    np.testing.assert_allclose(mask_iou(a, b), [4 / 12, 0.0])
    np.testing.assert_array_equal(mask_boxes(a), [[0, 0, 2, 4], [0, 0, 0, 0]])


def test_grabcut_seeded_by_a_coarse_map_recovers_the_object_the_threshold_overflows():
    # A bright disc on a dark striped background; the map is a wide blob around the disc's centre
    # (a CAM at feature resolution): the threshold rule returns the blob, GrabCut the disc.
    size = 64
    rng = np.random.default_rng(0)
    image = np.zeros((size, size, 3), np.float32)
    image[..., 2] = 0.15 + 0.1 * (np.arange(size)[None, :] // 4 % 2)
    image += rng.uniform(0, 0.05, image.shape).astype(np.float32)
    disc = np.zeros((size, size), np.uint8)
    cv2.circle(disc, (30, 34), 10, 1, -1)
    image[disc.astype(bool)] = (0.9, 0.8, 0.2)
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - 33) ** 2 + (xx - 31) ** 2) / (2 * 12.0 ** 2)).astype(np.float32)
    truth = disc.astype(bool)[None]
    by_threshold = ki.localize(blob[None])
    by_grabcut = ki.localize(blob[None], image[None], method="grabcut")
    assert mask_iou(by_grabcut.masks, truth)[0] > 0.85 > mask_iou(by_threshold.masks, truth)[0] + 0.3
    assert box_iou(by_grabcut.boxes, mask_boxes(truth))[0] > 0.8
    # A map at feature resolution is resized to the image first.
    small = cv2.resize(blob, (16, 16), interpolation=cv2.INTER_AREA)[None]
    assert ki.localize(small, image[None], method="grabcut").masks.shape == (1, size, size)


def test_bad_arguments_are_refused():
    maps = np.ones((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"method must be one of \('threshold', 'grabcut'\)"):
        ki.localize(maps, method="otsu")
    with pytest.raises(ValueError, match=r"threshold must be a fraction .*received 20"):
        ki.localize(maps, threshold=20)
    with pytest.raises(ValueError, match=r"grabcut.*pass images="):
        ki.localize(maps, method="grabcut")
    with pytest.raises(ValueError, match=r"one image per map \(2\)"):
        ki.localize(maps, np.zeros((3, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"two \(B, 4\) arrays"):
        box_iou(np.zeros((2, 4)), np.zeros((3, 4)))
