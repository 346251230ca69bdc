"""The generated shapes task: deterministic, its manifest reproduced, and its masks exactly
the drawn objects."""

import json
import math

import numpy as np
import pytest

from minitransformer.vision import shapes


def test_generation_is_deterministic_and_matches_the_manifest():
    manifest = json.loads(shapes.MANIFEST.read_text())
    assert manifest["version"] == shapes.VERSION
    for name in shapes.SPLITS:
        first = shapes.generate_split(name, shapes.MANIFEST_PREFIX)
        again = shapes.generate_split(name, shapes.MANIFEST_PREFIX)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        assert shapes.digest(*first) == manifest["splits"][name][f"sha256_first_{shapes.MANIFEST_PREFIX}"], (
            f"{name}: the generator no longer reproduces data/shapes-manifest.json; "
            "if the change is intended, run python -m minitransformer.vision.shapes --write-manifest"
        )
        assert manifest["splits"][name]["count"] == shapes.SPLITS[name][1]


def test_an_image_can_be_regenerated_alone():
    images, masks, labels = shapes.generate_split("test", 3, start=10)
    single = shapes.generate_split("test", 1, start=12)
    np.testing.assert_array_equal(images[2], single[0][0])
    np.testing.assert_array_equal(masks[2], single[1][0])
    assert labels[2] == single[2][0] == shapes.scene("test", 12).label


@pytest.mark.parametrize("split", ["train", "test_shifted"])
def test_masks_cover_exactly_the_drawn_object(split):
    """Rendering a scene without its object changes exactly the pixels of the mask: the
    object hides everything under it and nothing outside it is touched."""
    for index in range(40):
        scene = shapes.scene(split, index)
        with_object, mask = shapes.render_scene(scene)
        without, mask_again = shapes.render_scene(scene, draw_object=False)
        changed = np.any(with_object != without, axis=0)
        # a pixel of the mask whose noise clipped both renders to the same bound could stay equal
        clipped = np.all((with_object == without) & ((with_object == 0) | (with_object == 1)), axis=0)
        np.testing.assert_array_equal(changed | (mask & clipped), mask, err_msg=f"{split} image {index}")
        np.testing.assert_array_equal(mask, mask_again)
        assert mask.sum() > 20, f"{split} image {index}: the object covers only {mask.sum()} pixels"
        # inside the mask the image is the object's colour plus noise
        residual = with_object[:, mask] - np.clip(scene.colour[:, None], 0, 1)
        assert np.abs(residual[(with_object[:, mask] > 0) & (with_object[:, mask] < 1)]).max() < 6 * shapes.NOISE_STD


def test_mask_areas_follow_the_shapes_geometry():
    """A disk of radius r covers about πr² pixels and a square of half-side 0.8r covers 2.56r²."""
    for label, area in ((0, lambda r: math.pi * r * r), (2, lambda r: (1.6 * r) ** 2)):
        for radius in (6.0, 8.5):
            mask = shapes.shape_mask(label, (16.0, 16.0), radius, 0.3)
            assert abs(mask.sum() - area(radius)) / area(radius) < 0.08


def test_the_shifted_split_puts_objects_where_training_never_did():
    low, high = shapes.CENTRE_BOX
    for index in range(200):
        train, shifted = shapes.scene("train", index), shapes.scene("test_shifted", index)
        assert all(low <= c <= high for c in train.centre)
        assert not all(low <= c <= high for c in shifted.centre)
        assert all(shifted.radius <= c <= shapes.IMAGE_SIZE - shifted.radius for c in shifted.centre)


def test_classes_are_balanced():
    _, _, labels = shapes.generate_split("valid", 600)
    counts = np.bincount(labels, minlength=len(shapes.CLASSES))
    assert counts.min() > 600 / len(shapes.CLASSES) * 0.7


def test_load_split_builds_a_missing_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(shapes.SPLITS, "valid", (1, 12))
    images, masks, labels = shapes.load_split("valid", cache=tmp_path)
    assert (tmp_path / "valid.npz").exists() and images.shape == (12, 3, 32, 32) and masks.shape == (12, 32, 32)
    np.testing.assert_array_equal(images, shapes.generate_split("valid")[0])


def test_bad_split_names_and_ranges_raise():
    with pytest.raises(ValueError, match="unknown split 'tests'"):
        shapes.generate_split("tests")
    with pytest.raises(ValueError, match="count=5000"):
        shapes.generate_split("valid", 5000)
