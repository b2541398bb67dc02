"""Offline data for the frames and microscopy models, and the held-out split.

Shared by pipelines/train_frames.py, pipelines/train_microscopy.py and
pipelines/benchmark_quality_frames.py so the benchmark never sees a training image.

Frames (no download): the 200 ``lfw_subset`` faces of scikit-image (25 x 25, grey) —
faces 0..159 train, 160..199 are held out — and natural images: TRAIN_NATURAL train
(scikit-image pictures, both views of ``stereo_motorcycle``, and matplotlib's sample
photo ``grace_hopper``), HELDOUT_NATURAL (``chelsea``, ``coffee``) are held out (``cat``
is ``chelsea`` again and is not used at all), plus OPENCV_PHOTOS, the photographs among
OpenCV's sample images (Debian package ``opencv-doc``, examples/data), and
WALLPAPER_PHOTOS, the photographs (no artwork) in Debian's desktop-wallpaper packages
(``lomiri-wallpapers-16.04`` / ``-20.04``, ``mate-backgrounds``' nature set,
``plasma-workspace-wallpapers``), shrunk to a long side of WALLPAPER_LONG_SIDE. Packages
not installed are fetched from the package registry (``debian_data.debian_package``).

Microscopy: ``skimage.data.cell()`` (660 x 550, 8-bit widefield): rows 0..439 train
(used twice, as is and transposed, so both lateral directions stand in for z), rows
440..659 are held out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import skimage.data as skd
from debian_data import debian_package

TRAIN_NATURAL = ("astronaut", "camera", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "coins", "moon", "brick", "grass", "gravel", "clock", "page", "text", "retina",
                 "motorcycle_left", "motorcycle_right", "grace_hopper")
# photographs among OpenCV's samples (no drawings, text, charts or logos), as "opencv:NAME"
OPENCV_PHOTOS = tuple(f"opencv:{n}" for n in (
    "baboon", "fruits", "building", "board", "messi5", "aloeL", "leuvenA", "graf1",
    "chicky_512", "smarties", "butterfly", "orange", "apple", "squirrel_cls", "home",
    "basketball1", "aero1", "ela_original", "box_in_scene", "rubberwhale1", "starry_night"))
# photographs (no artwork) in Debian's desktop wallpaper packages, 1-6k px JPEGs, as
# "wallpaper:NAME" -> (package, path in the package)
_LOMIRI16 = "usr/share/backgrounds/{}_by_{}.jpg"
_PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
WALLPAPER_FILES = {
    **{f"lomiri_{a.lower()}": ("lomiri-wallpapers-16.04", _LOMIRI16.format(a, b)) for a, b in (
        ("Bridge", "Sander_Klootwijk"), ("Dragonfly", "Bolly"), ("Picture_0B", "freespace"),
        ("Picture_1A", "freespace"), ("Wine", "Jakkub_Mede"), ("aitzgorri", "Aitzol_Berasategi"),
        ("analogpattern", "Peter_Nerlich"), ("free", "Peter_Nerlich"),
        ("friends", "Aitzol_Berasategi"), ("greentock", "Peter_Nerlich"),
        ("life", "Aitzol_Berasategi"), ("picosdeeuropa", "Aitzol_Berasategi"),
        ("seeding", "Clements_Engelhardt"), ("sunset", "Aitzol_Berasategi"),
        ("umang", "Abhishek_Mudgal"))},
    "lomiri_kleiber": ("lomiri-wallpapers-20.04",
                       "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    **{f"mate_{n.lower()}": ("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{n}.jpg")
       for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
                 "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")},
    **{f"plasma_{n.lower()}": ("plasma-workspace-wallpapers", _PLASMA.format(n))
       for n in ("ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "OneStandsOut",
                 "Path", "summer_1am")},
}
WALLPAPER_PHOTOS = tuple(f"wallpaper:{n}" for n in WALLPAPER_FILES)
WALLPAPER_LONG_SIDE = 1024   # wallpapers are shrunk (antialiased) to this long side
# the opt-in photo sets of train_frames.py (--opencv-photos, --wallpaper-photos): name ->
# (pictures, what the model card says of them)
PHOTO_SETS = {
    "opencv": (OPENCV_PHOTOS, "the photographs among OpenCV's samples (Debian `opencv-doc`)"),
    "wallpaper": (WALLPAPER_PHOTOS, "the photographs in Debian's wallpaper packages "
                  "(lomiri-wallpapers-16.04/-20.04,\n  mate-backgrounds nature, "
                  f"plasma-workspace-wallpapers; long side {WALLPAPER_LONG_SIDE} px)"),
}
HELDOUT_NATURAL = ("chelsea", "coffee")
# the benchmark's held-out photo set (benchmark_quality_frames.py): the two held-out
# scikit-image photos and the opt-in photo sets, which the shipped frames-x4 never saw
# (it is trained without --opencv-photos / --wallpaper-photos; a model trained with them
# cannot be scored on this set)
HELDOUT_PHOTOS = HELDOUT_NATURAL + OPENCV_PHOTOS + WALLPAPER_PHOTOS
VAL_NATURAL = "motorcycle_right"   # training validation (checkpoint choice) only
N_TRAIN_FACES = 160
CELL_SPLIT = 440


def faces() -> np.ndarray:
    """(200, 25, 25) float64 grey faces in [0, 1]."""
    return skd.lfw_subset()


OPENCV_DOC_DATA = Path("usr/share/doc/opencv-doc/examples/data")


def opencv_samples() -> Path:
    """The folder of OpenCV's sample images: $MEDSR_OPENCV_SAMPLES, or those of Debian's
    ``opencv-doc`` (installed, or fetched by :func:`debian_package`)."""
    env = os.environ.get("MEDSR_OPENCV_SAMPLES")
    if env:
        if not (Path(env) / "baboon.jpg").is_file():
            raise SystemExit(f"MEDSR_OPENCV_SAMPLES={env} holds no OpenCV sample images")
        return Path(env)
    return debian_package("opencv-doc", OPENCV_DOC_DATA / "baboon.jpg") / OPENCV_DOC_DATA


def wallpaper_path(name: str) -> Path:
    """The file of WALLPAPER_PHOTOS entry "wallpaper:NAME" (its Debian package fetched
    when needed)."""
    package, rel = WALLPAPER_FILES[name.split(":", 1)[1]]
    return debian_package(package, Path(rel)) / rel


def natural(name: str) -> np.ndarray:
    """A scikit-image, matplotlib-sample, OpenCV-sample ("opencv:NAME") or wallpaper
    ("wallpaper:NAME", shrunk to WALLPAPER_LONG_SIDE) picture as uint8 (grey or RGB; alpha
    dropped)."""
    if name.startswith(("wallpaper:", "opencv:")):
        from PIL import Image

        kind, stem = name.split(":", 1)
        path = wallpaper_path(name) if kind == "wallpaper" else next(
            p for p in sorted(opencv_samples().glob(stem + ".*")) if p.suffix in (".jpg", ".png"))
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("L", "I;16") else "RGB")
            if kind == "wallpaper":
                f = WALLPAPER_LONG_SIDE / max(im.size)
                im = im.resize((round(im.width * f), round(im.height * f)),
                               Image.Resampling.LANCZOS, reducing_gap=3.0)
            img = np.asarray(im)
    elif name.startswith("motorcycle_"):
        left, right, _ = skd.stereo_motorcycle()
        img = np.asarray(left if name.endswith("left") else right)
    elif name == "grace_hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            img = np.asarray(im.convert("RGB"))
    else:
        img = np.asarray(getattr(skd, name)())
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def heldout_frames() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs the frames model never saw: 40 faces and 2 photos."""
    f = faces()
    out = [(f"face{i:03d}", np.round(f[i] * 255).astype(np.uint8))
           for i in range(N_TRAIN_FACES, len(f))]
    out += [(n, natural(n)) for n in HELDOUT_NATURAL]
    return out


def cell_train() -> np.ndarray:
    return skd.cell()[:CELL_SPLIT]


def cell_heldout() -> np.ndarray:
    return skd.cell()[CELL_SPLIT:]


def shifted_stack(img: np.ndarray, n_frames: int, rng: np.random.Generator,
                  speed: float = 0.5, jitter: float = 1.2) -> np.ndarray:
    """A synthetic frame stack (H', W', n_frames[, C]) of ``img`` (H, W[, C]) under
    camera motion.

    Frame t is ``img`` translated by a whole number of HR pixels: a slow drift (velocity
    drawn in [-speed, speed] pixels per frame) plus camera shake (Gaussian, ``jitter``
    pixels), rounded; neighbouring frames then differ by 0..3 HR pixels.
    Whole HR pixels are exact (no interpolation blur) and, after x4 decimation, different
    sub-pixel phases of the low-resolution sampling grid — what multi-frame SR exploits.
    All frames are cropped to the region every frame covers.
    """
    t = np.arange(n_frames) - (n_frames - 1) / 2
    v = rng.uniform(-speed, speed, size=2)
    off = np.rint(t[:, None] * v[None, :] + rng.normal(0, jitter, size=(n_frames, 2)))
    off = (off - off.min(axis=0)).astype(int)           # >= 0
    span = off.max(axis=0)
    h, w = img.shape[0] - span[0], img.shape[1] - span[1]
    if h < 1 or w < 1:
        raise ValueError(f"image {img.shape} too small for motion span {tuple(span)}")
    frames = [img[dy:dy + h, dx:dx + w] for dy, dx in off]
    return np.stack(frames, axis=2)
