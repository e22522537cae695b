"""Datasets: loading, validation, resizing and the fixed train/held-out split.

Every loader returns a `Dataset` of float32 images in [0, 1] (n, H, W). Bad input fails
early with a `DatasetError` whose message names the file and the problem, so nothing
is trained on broken data.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ibdiv.data import shapes
from ibdiv.core.io import load_npz, save_npz

# SHA-256 of the data files shipped in animal-mnist 0.4 (pinned so a changed package fails loudly).
ANIMALS_FILES = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
ANIMALS_CLASS_NAMES = [f"animal{i}" for i in range(10)]  # the package ships no names
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm"}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


@dataclass
class Dataset:
    images: np.ndarray  # float32 (n, H, W) in [0, 1]
    labels: np.ndarray  # int64 (n,)
    class_names: list[str]
    layouts: np.ndarray | None = None  # int64 (n,), shapes only: the path variable

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# ----------------------------------------------------------------------------- sources

def load_source(spec: dict, seed: int) -> Dataset:
    """Build the raw dataset described by one `datasets.<name>` config entry."""
    source = spec["source"]
    if source == "shapes":
        images, labels, layouts = shapes.generate(spec["n_images"], spec["image_size"], seed)
        return Dataset(images, labels, list(shapes.CLASS_NAMES), layouts)
    if source == "animals":
        data = load_animals()
    elif source == "digits":
        data = load_digits()
    elif source == "npz":
        data = load_npz_dataset(spec["path"])
    elif source == "folder":
        data = load_image_folder(spec["path"], spec["image_size"])
    else:  # the schema already restricts this; kept for library callers
        raise DatasetError(f"unknown dataset source {source!r}")
    data.images = resize(data.images, spec["image_size"])
    return data


def load_animals() -> Dataset:
    """The 10k 28x28 silhouettes shipped inside the `animal-mnist` package."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("animal-mnist: package not installed (pip install --no-deps animal-mnist==0.4)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    arrays = {}
    for name, digest in ANIMALS_FILES.items():
        path = folder / name
        _check_sha256(path, digest)
        arrays[name] = _restricted_unpickle(path)
    images = arrays["animal_data_version_3.gz"]
    labels = arrays["animal_label_version_3.gz"]
    _validate_arrays(images, labels, str(folder))
    return Dataset(images.astype(np.float32) / 255.0, labels.astype(np.int64), list(ANIMALS_CLASS_NAMES))


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    return Dataset((d.images / 16.0).astype(np.float32), d.target.astype(np.int64), [str(i) for i in range(10)])


def load_npz_dataset(path) -> Dataset:
    """Bring-your-own `.npz` with `images` (n, H, W) and `labels` (n,); optional `class_names`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # zip errors, pickled objects, truncated files
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    for key in ("images", "labels"):
        if key not in arrays:
            raise DatasetError(f"{path}: missing array {key!r} (found {sorted(arrays)})")
    images, labels = arrays["images"], arrays["labels"]
    _validate_arrays(images, labels, str(path))
    images = images.astype(np.float32)
    if images.max() > 1.0:  # 8-bit images
        images = images / 255.0
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    return _relabel(images, labels, names, str(path))


def image_files(folder, kind: str) -> list[Path]:
    """The image files of a folder, sorted; a DatasetError naming the folder if there are none
    (`kind`: what the folder is, for the message: "class", "condition")."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: {kind} folder missing or without images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_image(file, mode: str):
    """The PIL image of a file converted to `mode` ("L", "RGB"); a DatasetError naming the file."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            return im.convert(mode)
    except Exception as exc:
        raise DatasetError(f"{file}: unreadable image ({exc})") from exc


CROPS = ("center", "squash")  # how a non-square image becomes square (`square`)


def square(image, size: int, crop: str, resample):
    """A PIL image made size x size: "center" crops the centred square of side min(w, h) first (as
    the pretrained generators' training data were prepared), "squash" resizes the whole image (a
    non-square one is distorted). A square image is the same either way."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
    w, h = image.size
    if crop == "center" and w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), resample)


def load_image_folder(path, image_size: int) -> Dataset:
    """Bring-your-own folder with one sub-folder of images per class."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for file in image_files(class_dir, "class"):
            gray = read_image(file, "L").resize((image_size, image_size), Image.BILINEAR)
            images.append(np.asarray(gray, dtype=np.float32) / 255.0)
            labels.append(label)
    if not class_dirs:
        raise DatasetError(f"{root}: no class sub-folders")
    images, labels = np.stack(images), np.asarray(labels, dtype=np.int64)
    _validate_arrays(images, labels, str(root))
    return Dataset(images, labels, [p.name for p in class_dirs])


# ----------------------------------------------------------------------------- checks

def _validate_arrays(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    def fail(problem):
        raise DatasetError(f"{source}: {problem}")

    if images.ndim != 3:
        fail(f"images must have shape (n, H, W), got {images.shape}")
    if images.shape[1] != images.shape[2]:
        fail(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        fail(f"images must be numeric, got dtype {images.dtype}")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        fail(f"images contain {int((~np.isfinite(images)).sum())} NaN or infinite values")
    if images.min() < 0 or images.max() > 255:
        fail(f"pixel values must lie in [0, 1] or [0, 255], got [{images.min()}, {images.max()}]")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        fail(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) != len(images):
        fail(f"{len(labels)} labels do not match {len(images)} images")
    if labels.min() < 0:
        fail(f"labels must be non-negative, found {labels.min()}")
    if len(np.unique(labels)) < 2:
        fail(f"only one class ({labels[0]}) present; need at least two")


def _relabel(images, labels, names, source) -> Dataset:
    """Map arbitrary integer labels onto 0..C-1 (keeping order) and attach names."""
    classes, labels = np.unique(labels, return_inverse=True)
    if names is None:
        names = [str(c) for c in classes]
    elif len(names) < classes.max() + 1:
        raise DatasetError(f"{source}: {len(names)} class_names for labels up to {classes.max()}")
    else:
        names = [names[c] for c in classes]
    return Dataset(images, labels.astype(np.int64), names)


def _check_sha256(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise DatasetError(f"{path}: SHA-256 mismatch (expected {expected}, got {digest})")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuse every global except numpy's array reconstructors (pickles can run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        module = "numpy._core.multiarray" if module == "numpy.core.multiarray" else module
        return super().find_class(module, name)


def _restricted_unpickle(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f).load()
    except Exception as exc:
        raise DatasetError(f"{path}: cannot unpickle ({exc})") from exc
    if not isinstance(obj, np.ndarray):
        raise DatasetError(f"{path}: expected a numpy array, got {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------- transforms

def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Area-preserving (antialiased) resize of (n, H, W) float images to size x size."""
    if images.shape[1] == size:
        return images.astype(np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images.astype(np.float32))[:, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[:, 0].clamp(0, 1).numpy()


def stratified_split(labels: np.ndarray, heldout_fraction: float, seed: int) -> np.ndarray:
    """Boolean held-out mask with the same fraction taken from every class."""
    rng = np.random.default_rng(seed)
    heldout = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        heldout[idx[: int(round(heldout_fraction * len(idx)))]] = True
    return heldout


# ----------------------------------------------------------------------------- prepared files

def save_prepared(path, data: Dataset, heldout: np.ndarray, **extra) -> None:
    """Store images as uint8 (4x smaller; the pipeline's VQ reconstruction error is far larger).
    `extra`: further arrays (a pretrained dataset's `rgb` images at the backend's size)."""
    save_npz(
        path,
        **extra,
        images=np.round(data.images * 255).astype(np.uint8),
        labels=data.labels,
        layouts=data.layouts if data.layouts is not None else np.full(len(data.labels), -1),
        heldout=heldout,
        class_names=np.array(data.class_names),
    )


def load_prepared(path, split: str | None = None) -> Dataset:
    """Load a prepared dataset; `split` in {None, "train", "heldout"}."""
    arrays = load_npz(path)
    keep = np.ones(len(arrays["labels"]), dtype=bool)
    if split is not None:
        keep = arrays["heldout"] if split == "heldout" else ~arrays["heldout"]
    layouts = arrays["layouts"][keep]
    return Dataset(
        arrays["images"][keep].astype(np.float32) / 255.0,
        arrays["labels"][keep],
        [str(n) for n in arrays["class_names"]],
        layouts if (layouts >= 0).all() and len(layouts) else None,
    )
