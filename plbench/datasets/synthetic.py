"""The built-in synthetic dataset: textured shapes on cluttered backgrounds, written as COCO 2017.

Output layout (what :func:`write_synthetic_coco` writes; the COCO loader reads it unchanged)::

    OUT/
      annotations/instances_train2017.json
      annotations/instances_val2017.json
      train2017/000000000001.jpg ...
      val2017/000001000001.jpg ...

Each class is one conjunction ``colour x texture x shape`` (name ``"red_striped_circle"``). Six colours,
four textures and eight shapes are shared between classes, so no single attribute (and no single
pixel colour) identifies a class; unannotated *decoy* objects that differ from a class in exactly
one attribute, and background clutter in the same colours, make the conjunction necessary.

An image holds 1 to 6 annotated objects at random positions, scales and rotations; later objects
occlude earlier ones (each keeps at least half of its own area visible). Class prevalence is
long-tailed (Zipf-like over a fixed frequency ranking: the most frequent class is in about half of
the images, the rarest in a few percent) and a few fixed class pairs co-occur (when the first is
present, the second is added with probability :data:`PAIR_PROBABILITY`).

The class design (attributes, category ids, frequency ranking, pairs) depends on ``num_classes``
only; ``seed`` drives the images. Category ids are drawn from 1..90 with gaps, and the JSON lists
the categories in a shuffled order, as COCO's ids are not contiguous. Output is deterministic: the
same arguments give byte-identical JSON and JPEG files (one numpy generator per image, seeded from
``(seed, split, index)``; fixed JPEG quality and chroma subsampling).
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from plbench.artifacts.atomic import write_bytes, write_json
from plbench.errors import InputError
from plbench.progress import progress as show_progress  # the name `progress` is the caller's on/off flag

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 40),
    "green": (45, 170, 60),
    "blue": (45, 85, 215),
    "yellow": (230, 205, 45),
    "purple": (145, 60, 195),
    "cyan": (45, 195, 205),
}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "bar")

MAX_CLASSES = 80  # ids are drawn from 1..MAX_CATEGORY_ID, so at least 10 gaps always remain
MAX_CATEGORY_ID = 90
MAX_OBJECTS = 6  # annotated objects per image
PAIR_PROBABILITY = 0.6
TOP_PREVALENCE = 0.45  # before pairs and the "at least one object" rule, which add a few percent
RARE_PREVALENCE = 0.03
MEAN_CLASSES = 2.5  # cap on the expected number of distinct classes per image (matters for many classes)
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = 2  # 4:2:0, fixed so that the bytes never depend on a library default
SPLITS: tuple[str, ...] = ("train", "val")
SPLIT_ID_OFFSET = {"train": 0, "val": 1_000_000}  # image ids stay unique across splits, as in COCO
_DESIGN_SEED = 20170   # class design is a function of num_classes alone
_SUPERSAMPLE = 4       # shape masks are drawn 4x larger and box-filtered down (anti-aliasing)


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic dataset.

    Attributes:
        category_id: COCO category id in 1..90 (not contiguous across classes).
        name: ``"<colour>_<texture>_<shape>"``.
        colour, texture, shape: the attributes (keys of :data:`COLOURS`, members of :data:`TEXTURES`,
            :data:`SHAPES`).
        prevalence: target probability that an image holds the class, before co-occurrence pairs.
    """

    category_id: int
    name: str
    colour: str
    texture: str
    shape: str
    prevalence: float


@dataclass(frozen=True)
class SyntheticDesign:
    """Everything about the dataset that does not depend on the seed.

    Attributes:
        classes: the classes, in JSON order (shuffled, so not sorted by category id).
        pairs: co-occurring pairs as indices into ``classes``: ``(a, b)`` means b is added with
            probability :data:`PAIR_PROBABILITY` to an image holding a.
    """

    classes: tuple[SyntheticClass, ...]
    pairs: tuple[tuple[int, int], ...]


def _zipf_prevalence(num_classes: int) -> np.ndarray:
    """float64 (K,) prevalence by frequency rank: ``top * (rank+1) ** -alpha``, decreasing.

    ``alpha`` puts the rarest class at :data:`RARE_PREVALENCE`, unless the expected number of classes per
    image would then exceed :data:`MEAN_CLASSES`; then ``alpha`` grows (bisection) until it does not.
    """
    ranks = np.arange(1, num_classes + 1, dtype=np.float64)
    if num_classes == 1:
        return np.array([TOP_PREVALENCE])
    alpha = math.log(TOP_PREVALENCE / RARE_PREVALENCE) / math.log(num_classes)
    if (TOP_PREVALENCE * ranks**-alpha).sum() > MEAN_CLASSES:
        lo, hi = alpha, 10.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if (TOP_PREVALENCE * ranks**-mid).sum() > MEAN_CLASSES else (lo, mid)
        alpha = hi
    return TOP_PREVALENCE * ranks**-alpha


def design_classes(num_classes: int) -> SyntheticDesign:
    """The class design for ``num_classes`` classes (independent of the image seed).

    Attributes are assigned greedily so that colours, textures, shapes and (colour, shape) pairs are
    used as evenly as possible: every attribute is shared by several classes.

    Raises:
        ValueError: ``num_classes`` outside [1, :data:`MAX_CLASSES`].
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must lie in [1, {MAX_CLASSES}], but got {num_classes}")
    rng = np.random.default_rng([_DESIGN_SEED, num_classes])
    colours = list(COLOURS)
    triples = [(c, t, s) for c in colours for t in TEXTURES for s in SHAPES]
    order = rng.permutation(len(triples))  # tie-break among equally balanced candidates
    use: dict[Any, int] = {}
    chosen: list[tuple[str, str, str]] = []
    for _ in range(num_classes):
        best, best_cost = None, None
        for i in order:
            c, t, s = triples[i]
            if (c, t, s) in chosen:
                continue
            keys = (("c", c), ("t", t), ("s", s), ("cs", c, s), ("ct", c, t), ("ts", t, s))
            cost = sum(use.get(k, 0) for k in keys)
            if best_cost is None or cost < best_cost:
                best, best_cost = (c, t, s), cost
        assert best is not None
        chosen.append(best)
        c, t, s = best
        for k in (("c", c), ("t", t), ("s", s), ("cs", c, s), ("ct", c, t), ("ts", t, s)):
            use[k] = use.get(k, 0) + 1

    ids = np.sort(rng.choice(np.arange(1, MAX_CATEGORY_ID + 1), size=num_classes, replace=False))
    prevalence = _zipf_prevalence(num_classes)
    rank = rng.permutation(num_classes)  # class i has frequency rank rank[i]
    classes = [
        SyntheticClass(int(ids[i]), f"{c}_{t}_{s}", c, t, s, float(prevalence[rank[i]]))
        for i, (c, t, s) in enumerate(chosen)
    ]
    json_order = rng.permutation(num_classes)
    if num_classes > 1 and np.all(np.diff(json_order) > 0):
        json_order = json_order[::-1]
    classes = [classes[i] for i in json_order]

    # Pairs: a frequent-half class pulls in another class; each class is in at most one pair.
    by_rank = sorted(range(num_classes), key=lambda i: -classes[i].prevalence)
    head, tail = by_rank[: num_classes // 2], by_rank[num_classes // 2:]
    num_pairs = max(1, num_classes // 5) if num_classes >= 2 else 0
    heads = [int(i) for i in rng.permutation(head)[:num_pairs]]
    free = [i for i in by_rank if i not in heads]
    tails = [int(i) for i in rng.permutation([i for i in free if i in tail] or free)[:len(heads)]]
    pairs = tuple(zip(heads, tails))
    return SyntheticDesign(tuple(classes), pairs)


# -- per-image content --------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticObject:
    """One object to draw: its attributes and the index of its class in ``design.classes``.

    ``class_index`` is -1 for an unannotated decoy.
    """

    colour: str
    texture: str
    shape: str
    class_index: int


def sample_objects(rng: np.random.Generator, design: SyntheticDesign) -> list[SyntheticObject]:
    """The objects of one image, bottom first: 1..MAX_OBJECTS annotated ones, then 0..2 decoys mixed in.

    Each class is present with its prevalence (plus the pair rule); a present class gets 1 to 3
    instances. The first object is always an annotated one (it is always placed, so no image is empty).
    """
    classes = design.classes
    prevalence = np.array([c.prevalence for c in classes])
    present = rng.random(len(classes)) < prevalence
    for a, b in design.pairs:
        if present[a] and rng.random() < PAIR_PROBABILITY:
            present[b] = True
    if not present.any():
        present[rng.choice(len(classes), p=prevalence / prevalence.sum())] = True
    counts = np.where(present, 1 + rng.binomial(2, 0.15, size=len(classes)), 0)
    while counts.sum() > MAX_OBJECTS:
        multi = np.flatnonzero(counts > 1)
        pool = multi if multi.size else np.flatnonzero(counts)
        counts[rng.choice(pool)] -= 1
    objects = [
        SyntheticObject(classes[k].colour, classes[k].texture, classes[k].shape, int(k))
        for k in np.flatnonzero(counts) for _ in range(counts[k])
    ]
    taken = {(c.colour, c.texture, c.shape) for c in classes}
    for _ in range(rng.choice(3, p=[0.35, 0.4, 0.25])):
        base = classes[rng.integers(len(classes))]
        attrs = [base.colour, base.texture, base.shape]
        which = rng.integers(3)
        options = (list(COLOURS), list(TEXTURES), list(SHAPES))[which]
        attrs[which] = options[rng.integers(len(options))]
        if tuple(attrs) not in taken:  # a near miss of some class, never a class itself
            objects.append(SyntheticObject(attrs[0], attrs[1], attrs[2], -1))
    order = rng.permutation(len(objects))
    first = next(i for i in order if objects[i].class_index >= 0)  # first drawn is always kept
    order = [first] + [i for i in order if i != first]
    return [objects[i] for i in order]


def _unit_polygon(shape: str) -> np.ndarray:
    """float64 (V, 2) outline of ``shape`` with circumradius about 1, centred on the origin."""
    if shape == "square":
        a = np.deg2rad([45, 135, 225, 315])
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape == "triangle":
        a = np.deg2rad([90, 210, 330])
        return np.stack([np.cos(a), np.sin(a)], 1) * 1.1
    if shape == "star":
        a = np.deg2rad(90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.05, 0.45)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if shape == "cross":
        w = 0.32
        pts = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1),
               (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
        return np.array(pts, dtype=np.float64) * 0.95
    if shape == "bar":
        return np.array([(1, 0.34), (-1, 0.34), (-1, -0.34), (1, -0.34)], dtype=np.float64) * 1.0
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)  # round shapes: a 16-gon outline
    return np.stack([np.cos(a), np.sin(a)], 1)


_POLYGONS = {s: _unit_polygon(s) for s in SHAPES}


def _rotate(points: np.ndarray, theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return points @ np.array([[c, s], [-s, c]])


def _shape_alpha(shape: str, radius: float, theta: float, cx: float, cy: float, side: int) -> np.ndarray:
    """float32 (side, side) coverage in [0, 1] of ``shape`` centred at (cx, cy) in patch pixels."""
    k = _SUPERSAMPLE
    im = Image.new("L", (side * k, side * k), 0)
    draw = ImageDraw.Draw(im)
    r, x, y = radius * k, cx * k, cy * k
    if shape in ("circle", "ring", "crescent"):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        if shape == "ring":
            ri = 0.55 * r
            draw.ellipse([x - ri, y - ri, x + ri, y + ri], fill=0)
        elif shape == "crescent":
            ox, oy = x + 0.5 * r * math.cos(theta), y + 0.5 * r * math.sin(theta)
            ri = 0.8 * r
            draw.ellipse([ox - ri, oy - ri, ox + ri, oy + ri], fill=0)
    else:
        pts = _rotate(_POLYGONS[shape], theta) * r + (x, y)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    return np.asarray(im.reduce(k), dtype=np.float32) / 255.0


def _texture_mix(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """float32 weight of the secondary colour at rotated patch coordinates ``u, v`` (pixels)."""
    if texture == "solid":
        return np.zeros_like(u)
    if texture == "striped":
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * u / period), 0, 1)
    if texture == "checkered":
        p = 1.3 * period
        return np.clip(0.5 + 2.0 * np.sin(2 * np.pi * u / p) * np.sin(2 * np.pi * v / p), 0, 1)
    du = u / period - np.round(u / period)  # dotted: a dot of radius 0.3 * period per cell
    dv = v / period - np.round(v / period)
    d = np.sqrt(du * du + dv * dv) * period
    return np.clip(0.3 * period - d + 0.5, 0, 1)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth muted colour field with clutter strokes and blobs in the object colours."""
    grey = rng.uniform(70, 190, size=(3, 3, 1))
    tint = rng.uniform(-22, 22, size=(3, 3, 3))
    field = np.clip(grey + tint, 0, 255).astype(np.uint8)
    bg = Image.fromarray(field, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(bg)
    palette = list(COLOURS.values())
    for _ in range(rng.integers(2, 7)):  # line strokes
        col = _jitter(rng, palette[rng.integers(len(palette))])
        x0, y0 = rng.uniform(0, size, 2)
        ang, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.4) * size
        draw.line([(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))],
                  fill=col, width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(1, 5)):  # small blobs, well below object size
        col = _jitter(rng, palette[rng.integers(len(palette))])
        x0, y0 = rng.uniform(0, size, 2)
        r = rng.uniform(0.015, 0.05) * size
        draw.ellipse([x0 - r, y0 - r * rng.uniform(0.5, 1.0), x0 + r, y0 + r], fill=col)
    return bg


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    out = np.clip(np.asarray(rgb) * rng.uniform(0.75, 1.1) + rng.normal(0, 12, 3), 0, 255)
    return tuple(int(x) for x in out)  # type: ignore[return-value]


def _render_image(rng: np.random.Generator, objects: Sequence[SyntheticObject], size: int
                 ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image.

    Args:
        rng: the image's own generator (consumed).
        objects: what to draw, bottom first; the first one is always placed.
        size: image side in pixels.
    Returns:
        uint8 (size, size, 3) RGB, and one record per placed annotated object with ``class_index``,
        ``bbox`` [x, y, w, h] of its visible pixels, ``area`` (visible pixel count) and
        ``segmentation`` (its full outline polygon, flat [x1, y1, x2, y2, ...]).
    """
    img = np.asarray(_background(rng, size), dtype=np.float32).copy()
    owner = np.full((size, size), -1, dtype=np.int16)
    areas: list[int] = []
    placed: list[tuple[SyntheticObject, list[float]]] = []
    for obj in objects:
        diameter = size * math.exp(rng.uniform(math.log(0.22), math.log(0.45)))
        ok = False
        for attempt in range(10):
            if attempt and attempt % 3 == 0:
                diameter *= 0.85
            r = diameter / 2
            side = int(math.ceil(diameter)) + 3
            if side > size:
                continue
            x0, y0 = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            cx, cy = r + 1.5 + rng.uniform(0, 1), r + 1.5 + rng.uniform(0, 1)
            theta = float(rng.uniform(0, 2 * np.pi))
            alpha = _shape_alpha(obj.shape, r, theta, cx, cy, side)
            solid = alpha > 0.5
            region = owner[y0:y0 + side, x0:x0 + side]
            covered = np.bincount(region[solid] + 1, minlength=len(areas) + 1)[1:]
            visible = np.bincount(owner.ravel() + 1, minlength=len(areas) + 1)[1:]
            if areas and np.any(visible - covered < 0.5 * np.asarray(areas)):
                continue  # would hide more than half of an earlier object
            ok = True
            break
        if not ok:
            continue
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
        dx, dy = xx - cx, yy - cy
        c, s = math.cos(theta), math.sin(theta)
        u, v = c * dx + s * dy, -s * dx + c * dy
        period = size * 0.065 * rng.uniform(0.85, 1.15)
        mix = _texture_mix(obj.texture, u, v, period)[..., None]
        primary = np.asarray(_jitter(rng, COLOURS[obj.colour]), dtype=np.float32)
        secondary = primary * rng.uniform(0.2, 0.4)
        light_dir = rng.uniform(0, 2 * np.pi)  # soft shading, so flat colour is not a per-pixel cue
        light = 1.0 + 0.15 * (dx * math.cos(light_dir) + dy * math.sin(light_dir)) / max(r, 1.0)
        colour = (primary * (1 - mix) + secondary * mix) * light[..., None]
        a = alpha[..., None]
        patch = img[y0:y0 + side, x0:x0 + side]
        patch[:] = patch * (1 - a) + colour * a
        region[solid] = len(areas)
        areas.append(int(solid.sum()))
        outline = _rotate(_POLYGONS[obj.shape], theta) * r + (x0 + cx, y0 + cy)
        placed.append((obj, np.clip(outline, 0, size).round(2).ravel().tolist()))

    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.choice(3, p=[0.5, 0.35, 0.15])):  # thin strokes on top: light occlusion
        col = _jitter(rng, list(COLOURS.values())[rng.integers(len(COLOURS))])
        x0, y0 = rng.uniform(0, size, 2)
        ang, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.5) * size
        draw.line([(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))], fill=col, width=1)
    out = np.asarray(pil, dtype=np.float32) + rng.normal(0, 4.0, size=(size, size, 3)).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)

    records = []
    for j, (obj, seg) in enumerate(placed):
        if obj.class_index < 0:
            continue
        ys, xs = np.nonzero(owner == j)
        if xs.size == 0:  # cannot happen (half of each object stays visible); kept as a guard
            continue
        x_min, y_min = int(xs.min()), int(ys.min())
        records.append({
            "class_index": obj.class_index,
            "bbox": [float(x_min), float(y_min), float(xs.max() - x_min + 1), float(ys.max() - y_min + 1)],
            "area": float(xs.size),
            "segmentation": [seg],
        })
    return out, records


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY,
                                     subsampling=JPEG_SUBSAMPLING, optimize=False)
    return buf.getvalue()


def image_file_name(split: str, index: int) -> tuple[int, str]:
    """(image id, file name) of the ``index``-th image of ``split`` (COCO's 12-digit names)."""
    image_id = SPLIT_ID_OFFSET[split] + index + 1
    return image_id, f"{image_id:012d}.jpg"


def generate_image(design: SyntheticDesign, seed: int, split: str, index: int, image_size: int
                   ) -> tuple[bytes, list[dict[str, Any]]]:
    """JPEG bytes and annotation records (see :func:`_render_image`) of one image; pure function."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    rgb, records = _render_image(rng, sample_objects(rng, design), image_size)
    return _encode_jpeg(rgb), records


def write_synthetic_coco(
    out_dir: str | Path,
    *,
    train: int = 2000,
    val: int = 500,
    num_classes: int = 20,
    image_size: int = 96,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the synthetic dataset to ``out_dir`` in the COCO 2017 layout (module docstring).

    Files of an earlier run in ``out_dir`` are overwritten; stray files are left alone.

    Args:
        out_dir: dataset root, created if needed.
        train, val: number of images per split (>= 1, < 1,000,000).
        num_classes: number of classes K, in [1, 80].
        image_size: square image side in pixels, in [32, 1024].
        seed: image seed, >= 0 (the class design depends on ``num_classes`` only).
        progress: show progress on stderr (:func:`plbench.progress.progress`: a bar on a terminal,
            plain lines otherwise).
    Returns:
        A JSON-able summary: ``out_dir``; ``images`` and ``annotations`` per split; ``classes`` in
        category-id order (the loader's class order), each with ``id``, ``name`` and ``frequency``
        (fraction of images of each split holding it); ``pairs``, each with ``a``, ``b``,
        ``p_b_given_a`` and ``p_b`` measured on train.
    Raises:
        ValueError: an argument out of range.
        plbench.errors.InputError: ``out_dir`` exists and is not a folder.
    Example:
        >>> summary = write_synthetic_coco("data/synthetic", train=200, val=50)  # doctest: +SKIP
        >>> summary["images"]  # doctest: +SKIP
        {'train': 200, 'val': 50}
    """
    for name, n in (("train", train), ("val", val)):
        if not 1 <= n < SPLIT_ID_OFFSET["val"]:
            raise ValueError(f"{name} must lie in [1, {SPLIT_ID_OFFSET['val'] - 1}], but got {n}")
    if not 32 <= image_size <= 1024:
        raise ValueError(f"image_size must lie in [32, 1024], but got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, but got {seed}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out", "expected a folder (or a new path), but got an existing file",
                         "choose another --out path")
    design = design_classes(num_classes)
    classes = design.classes
    counts = {"train": train, "val": val}
    bar = show_progress(total=train + val, desc="synthetic images", unit="img", enabled=progress)
    presence: dict[str, np.ndarray] = {}
    annotations_count: dict[str, int] = {}
    categories = [{"id": c.category_id, "name": c.name, "supercategory": c.shape} for c in classes]
    ann_id = 0
    try:
        for split in SPLITS:
            n = counts[split]
            image_dir = out / f"{split}2017"
            image_dir.mkdir(parents=True, exist_ok=True)
            images, anns = [], []
            present = np.zeros((n, len(classes)), dtype=bool)
            for i in range(n):
                image_id, file_name = image_file_name(split, i)
                data, records = generate_image(design, seed, split, i, image_size)
                write_bytes(image_dir / file_name, data)
                images.append({"id": image_id, "file_name": file_name, "width": image_size,
                               "height": image_size})
                for rec in records:
                    ann_id += 1
                    present[i, rec["class_index"]] = True
                    anns.append({
                        "id": ann_id, "image_id": image_id,
                        "category_id": classes[rec["class_index"]].category_id,
                        "bbox": rec["bbox"], "area": rec["area"], "iscrowd": 0,
                        "segmentation": rec["segmentation"],
                    })
                bar.update(1)
            doc = {
                "info": {
                    "description": f"plbench synthetic dataset ({len(classes)} classes, seed {seed})",
                    "version": "1.0",
                    "year": 2017,
                    "contributor": "plbench",
                    "date_created": "2017-01-01",  # fixed: output bytes must not depend on the clock
                },
                "licenses": [],
                "images": images,
                "annotations": anns,
                "categories": categories,
            }
            write_json(out / "annotations" / f"instances_{split}2017.json", doc)
            presence[split] = present
            annotations_count[split] = len(anns)
            logger.info("wrote %d %s images and %d annotations to %s", n, split, len(anns), out)
    finally:
        bar.close()

    by_id = sorted(range(len(classes)), key=lambda k: classes[k].category_id)
    tr = presence["train"]
    pairs = []
    for a, b in design.pairs:
        has_a = tr[:, a]
        pairs.append({
            "a": classes[a].name, "b": classes[b].name,
            "p_b_given_a": float(tr[has_a, b].mean()) if has_a.any() else float("nan"),
            "p_b": float(tr[:, b].mean()),
        })
    return {
        "out_dir": str(out),
        "seed": seed,
        "image_size": image_size,
        "images": dict(counts),
        "annotations": annotations_count,
        "classes": [
            {"id": classes[k].category_id, "name": classes[k].name,
             "frequency": {s: float(presence[s][:, k].mean()) for s in SPLITS}}
            for k in by_id
        ],
        "pairs": pairs,
    }
