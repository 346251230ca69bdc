"""A generated image task with ground-truth masks: one shape among clutter, name the shape.

    python -m minitransformer.vision.shapes --out data/shapes/      # what `make data` runs
    python -m minitransformer.vision.shapes --out data/shapes/ --check   # compare with the manifest

Each 32×32 RGB image holds one object of six classes (disk, ring, square, triangle, cross,
star) at a random position, scale, rotation and colour, drawn over a cluttered background:
a colour gradient, soft blobs, line segments and dots (the distractors), and Gaussian
noise over everything. The label is the object's class and the mask is the set of pixels
the object covers. The object is drawn last and opaque, so its mask is exactly where
removing it would change the image (tests/test_vision_data.py checks this).

Splits, all from the same distribution except the last:

    train 6,000   valid 1,000   test 1,000     object centres in the middle box [10, 22]², radius 6–9 px
    test_shifted 1,000                         centres outside that box (near the borders), radius 5–6 px:
                                               positions never seen in training

Every image is drawn from its own seed (the split's number and the image's index), so any
image can be regenerated alone, and the whole set is the same on every run: the manifest
data/shapes-manifest.json holds the SHA-256 of every split, which `make data` checks.
Nothing is downloaded; the cache in data/shapes/ is rebuilt when missing, in seconds.
"""

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

CLASSES = ("disk", "ring", "square", "triangle", "cross", "star")
IMAGE_SIZE = 32
SPLITS = {"train": (0, 6000), "valid": (1, 1000), "test": (2, 1000), "test_shifted": (3, 1000)}  # seed, count
CENTRE_BOX = (10.0, 22.0)  # training centres lie in this square (both coordinates)
NOISE_STD = 0.05
VERSION = 1
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / "data" / "shapes"
MANIFEST = REPO / "data" / "shapes-manifest.json"
MANIFEST_PREFIX = 64  # the manifest also hashes each split's first 64 images, for a quick test


class Scene(NamedTuple):
    """Everything that decides one image."""

    label: int
    centre: tuple  # (row, column) in pixels
    radius: float
    rotation: float  # radians
    colour: np.ndarray  # (3,)
    background: dict  # gradient, blobs, segments, dots
    noise_seed: int


# --- shapes: which pixel centres lie inside the object -----------------------------------


def _polygon_contains(u, v, corners):
    """Even-odd rule: is (u, v) inside the closed polygon ``corners`` (K, 2)? Vectorized."""
    inside = np.zeros(u.shape, dtype=bool)
    for (u1, v1), (u2, v2) in zip(corners, np.roll(corners, -1, axis=0)):
        crosses = (v1 > v) != (v2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            u_at = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
        inside ^= crosses & (u < u_at)
    return inside


def _regular_polygon(n_corners, radius, inner=None):
    """Corners of a regular polygon (or a star, alternating ``inner`` radius), one pointing up."""
    if inner is None:
        angles = -math.pi / 2 + 2 * math.pi * np.arange(n_corners) / n_corners
        radii = np.full(n_corners, radius)
    else:
        angles = -math.pi / 2 + math.pi * np.arange(2 * n_corners) / n_corners
        radii = np.where(np.arange(2 * n_corners) % 2 == 0, radius, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def shape_mask(label, centre, radius, rotation, size=IMAGE_SIZE):
    """(size, size) bool: the pixels whose centre lies inside the rotated shape."""
    rows, columns = np.mgrid[0:size, 0:size] + 0.5
    cos, sin = math.cos(rotation), math.sin(rotation)
    # coordinates in the object's frame: u along its rotated x axis, v along y
    u = cos * (columns - centre[1]) + sin * (rows - centre[0])
    v = -sin * (columns - centre[1]) + cos * (rows - centre[0])
    distance = np.hypot(u, v)
    name = CLASSES[label]
    if name == "disk":
        return distance <= radius
    if name == "ring":
        return (distance <= radius) & (distance >= 0.55 * radius)
    if name == "square":
        return (np.abs(u) <= 0.8 * radius) & (np.abs(v) <= 0.8 * radius)
    if name == "triangle":
        return _polygon_contains(u, v, _regular_polygon(3, 1.15 * radius))
    if name == "cross":
        arm = 0.3 * radius
        return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | ((np.abs(v) <= radius) & (np.abs(u) <= arm))
    if name == "star":
        return _polygon_contains(u, v, _regular_polygon(5, 1.1 * radius, inner=0.5 * radius))
    raise ValueError(f"unknown class {label}")


# --- scenes --------------------------------------------------------------------------------


def sample_scene(rng, shifted=False):
    """Draw a Scene: the class uniformly, the centre in the middle box (or outside it)."""
    label = int(rng.integers(len(CLASSES)))
    low, high = CENTRE_BOX
    if not shifted:
        radius = float(rng.uniform(6.0, 9.0))
        centre = (float(rng.uniform(low, high)), float(rng.uniform(low, high)))
    else:
        radius = float(rng.uniform(5.0, 6.0))
        margin = 6.0  # keeps a radius-6 object inside the frame
        while True:
            centre = tuple(float(c) for c in rng.uniform(margin, IMAGE_SIZE - margin, size=2))
            if not all(low <= c <= high for c in centre):
                break
    background = {
        "gradient": rng.uniform(0.0, 1.0, size=(2, 3)) * 0.6 + 0.2,  # two colours to blend
        "direction": float(rng.uniform(0, 2 * math.pi)),
        "blobs": [
            (rng.uniform(0, IMAGE_SIZE, size=2), float(rng.uniform(2.0, 6.0)), rng.uniform(0, 1, size=3))
            for _ in range(int(rng.integers(2, 5)))
        ],
        "segments": [
            (rng.uniform(0, IMAGE_SIZE, size=2), rng.uniform(0, IMAGE_SIZE, size=2), rng.uniform(0, 1, size=3))
            for _ in range(int(rng.integers(2, 5)))
        ],
        "dots": [(rng.integers(0, IMAGE_SIZE - 1, size=2), rng.uniform(0, 1, size=3)) for _ in range(int(rng.integers(3, 7)))],
    }
    return Scene(label, centre, radius, float(rng.uniform(0, 2 * math.pi)), rng.uniform(0.0, 1.0, size=3),
                 background, int(rng.integers(2**31)))  # fmt: skip


def _segment_mask(start, end, size=IMAGE_SIZE):
    """Pixels within half a pixel of the segment from ``start`` to ``end`` (row, column)."""
    rows, columns = np.mgrid[0:size, 0:size] + 0.5
    direction = end - start
    length_sq = max(float(direction @ direction), 1e-9)
    t = np.clip(((rows - start[0]) * direction[0] + (columns - start[1]) * direction[1]) / length_sq, 0.0, 1.0)
    return np.hypot(rows - (start[0] + t * direction[0]), columns - (start[1] + t * direction[1])) <= 0.5


def render_scene(scene, draw_object=True):
    """Scene -> image (3, 32, 32) float64 in [0, 1] and mask (32, 32) bool.

    The noise comes from the scene's own seed, so rendering with and without the object
    differs exactly on the mask."""
    size = IMAGE_SIZE
    rows, columns = np.mgrid[0:size, 0:size] + 0.5
    bg = scene.background
    # the background: a linear blend of two colours along a direction
    along = (math.cos(bg["direction"]) * (columns - size / 2) + math.sin(bg["direction"]) * (rows - size / 2)) / size + 0.5
    image = bg["gradient"][0][:, None, None] * (1 - along) + bg["gradient"][1][:, None, None] * along  # (3, H, W)
    # soft blobs: Gaussian bumps mixed in
    for centre, spread, colour in bg["blobs"]:
        weight = 0.6 * np.exp(-((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) / (2 * spread**2))  # (H, W)
        image = image * (1 - weight) + colour[:, None, None] * weight
    # distractors: thin segments and dots, none of them a shape of the six classes
    for start, end, colour in bg["segments"]:
        image[:, _segment_mask(start, end)] = colour[:, None]
    for (row, column), colour in bg["dots"]:
        image[:, row : row + 2, column : column + 2] = colour[:, None, None]
    mask = shape_mask(scene.label, scene.centre, scene.radius, scene.rotation)
    if draw_object:
        image[:, mask] = scene.colour[:, None]
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, NOISE_STD, size=image.shape)
    return np.clip(image + noise, 0.0, 1.0), mask


def scene(name, index):
    """The Scene of image ``index`` of split ``name``: drawn from its own seed alone."""
    split_seed, total = SPLITS[name]
    if not 0 <= index < total:
        raise ValueError(f"index {index} is outside the {total} images of {name!r}")
    return sample_scene(np.random.default_rng([VERSION, split_seed, index]), shifted=name == "test_shifted")


def generate_split(name, count=None, start=0):
    """images (N, 3, 32, 32) uint8, masks (N, 32, 32) bool, labels (N,) int64 of a split
    (its first ``count`` images from index ``start``, all of them by default)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    split_seed, total = SPLITS[name]
    count = total - start if count is None else count
    if not 0 <= start <= total or not 0 <= count <= total - start:
        raise ValueError(f"count={count} from start={start} does not fit the {total} images of {name!r}")
    images = np.empty((count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    masks = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    labels = np.empty(count, dtype=np.int64)
    for offset in range(count):
        drawn = scene(name, start + offset)
        image, mask = render_scene(drawn)
        images[offset] = np.rint(image * 255).astype(np.uint8)
        masks[offset], labels[offset] = mask, drawn.label
    return images, masks, labels


def digest(images, masks, labels):
    """SHA-256 of a split's arrays, in a fixed byte order."""
    hasher = hashlib.sha256()
    for array in (images, masks, labels.astype("<i8")):
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()


def load_split(name, cache=DEFAULT_CACHE):
    """images, masks, labels of a split, from the cache (generated into it when missing)."""
    path = Path(cache) / f"{name}.npz"
    if not path.exists():
        write_split(name, cache)
    with np.load(path) as data:
        return data["images"], data["masks"], data["labels"]


def write_split(name, cache=DEFAULT_CACHE):
    """Generate a split into ``cache``/name.npz; return (full digest, first-64 digest)."""
    images, masks, labels = generate_split(name)
    Path(cache).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(cache) / f"{name}.npz", images=images, masks=masks, labels=labels)
    return digest(images, masks, labels), digest(images[:MANIFEST_PREFIX], masks[:MANIFEST_PREFIX], labels[:MANIFEST_PREFIX])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_CACHE), help="the cache folder (default data/shapes/)")
    parser.add_argument("--check", action="store_true", help="fail if a split differs from data/shapes-manifest.json")
    parser.add_argument("--write-manifest", action="store_true", help="(re)write the manifest from this generation")
    args = parser.parse_args(argv)
    manifest = {"version": VERSION, "splits": {}}
    started = time.perf_counter()
    for name, (_, count) in SPLITS.items():
        full, prefix = write_split(name, args.out)
        manifest["splits"][name] = {"count": count, "sha256": full, f"sha256_first_{MANIFEST_PREFIX}": prefix}
        print(f"{name:>13}: {count:5d} images  sha256 {full[:16]}…", flush=True)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    if args.write_manifest:
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"wrote {MANIFEST}")
    elif MANIFEST.exists():
        expected = json.loads(MANIFEST.read_text())
        if expected != manifest:
            print(f"the generated splits differ from {MANIFEST}", file=sys.stderr)
            return 1 if args.check else 0
        print(f"identical to {MANIFEST.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
