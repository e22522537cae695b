"""Settings that depend on the data, checked before any job runs (the Snakefile calls
`check_dataset_settings` at start-up, workflow/rules/common.smk).

A setting that cannot work on the configured data (a matched N per class larger than the
held-out images of a class, a token grid the image cannot be downsampled to, ...) would
otherwise fail only in the job that needs it, after the tokenizer, classifier and priors were
trained. The images per class are read without building the dataset: generated shapes are
balanced by construction, a bring-your-own .npz's labels array, a folder's image files (those
PIL recognises from their header: `is_image`; an empty or garbage .png is not counted), the
label file of the animals package, digits from its prepared file (or scikit-learn).

No job imports this module, so editing it reruns nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ibdiv.data import datasets, shapes


class DatasetSettingsError(datasets.DatasetError):
    """A setting does not fit a dataset; the message names the key to change and the numbers."""


def heldout_count(n_class: int, heldout_fraction: float) -> int:
    """Held-out rows `datasets.stratified_split` takes from a class of `n_class` rows."""
    return int(round(heldout_fraction * n_class))


def is_image(path: Path) -> bool:
    """An image file the loaders can read, judged from its header only (this runs at every
    Snakemake start): an image suffix, non-empty, and PIL identifies its format. `Image.open`
    parses the header and decodes no pixel; `verify()` would read every chunk of a PNG."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in datasets.IMAGE_SUFFIXES or not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def _image_count(folder: Path) -> int:
    return sum(is_image(p) for p in folder.iterdir())


def known_class_counts(spec: dict, prepared=None) -> dict[str, int] | None:
    """Images per class (all splits) of one `datasets.<name>` entry, read without building the
    dataset; None where that is not possible (a missing or malformed file: preparing the data
    reports it). `prepared`: the dataset's prepared file, read for digits where it exists."""
    source = spec["source"]
    if source == "pretrained":
        if "render_shapes" in spec:
            return {c["name"]: spec["render_shapes"]["n_per_condition"] for c in spec["conditions"]}
        folders = [Path(c["images"]) for c in spec["conditions"] if c.get("images")]
        if len(folders) < len(spec["conditions"]) or not all(f.is_dir() for f in folders):
            return None
        return {c["name"]: _image_count(Path(c["images"])) for c in spec["conditions"]}
    if source == "shapes":
        counts = np.bincount(np.arange(spec["n_images"]) % len(shapes.CLASS_NAMES), minlength=len(shapes.CLASS_NAMES))
        return dict(zip(shapes.CLASS_NAMES, counts.tolist()))
    if source == "folder":
        root = Path(spec["path"])
        if not root.is_dir():
            return None
        counts = {d.name: _image_count(d) for d in sorted(root.iterdir()) if d.is_dir()}
        return counts if counts and min(counts.values()) > 0 else None  # the loader names the empty folder
    if source == "animals":
        return _animals_counts()
    if source == "digits" and (prepared is None or not Path(prepared).is_file()):
        from sklearn.datasets import load_digits  # once: afterwards the prepared file is read

        return _counts(load_digits().target, None)
    path = Path(spec["path"] if source == "npz" else prepared)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:  # reads only the arrays asked for
            names = [str(n) for n in f["class_names"]] if "class_names" in f.files else None
            return _counts(f["labels"], names)
    except Exception:  # unreadable or malformed: loading reports it when the data are prepared
        return None


def _counts(labels, names) -> dict[str, int] | None:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or not len(labels) or labels.min() < 0:
        return None
    classes, counts = np.unique(labels, return_counts=True)
    keys = [str(c) for c in classes]
    if names is not None and len(names) > classes.max() and len({names[c] for c in classes}) == len(classes):
        keys = [names[c] for c in classes]
    return dict(zip(keys, counts.tolist()))


def _animals_counts() -> dict[str, int] | None:
    import importlib.util

    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST" / "animal_label_version_3.gz"
    try:
        labels = datasets._restricted_unpickle(path)
    except datasets.DatasetError:
        return None
    counts = _counts(labels.astype(np.int64), None)
    return {datasets.ANIMALS_CLASS_NAMES[int(c)]: n for c, n in counts.items()} if counts else None


def settings_problems(config: dict, class_counts: dict | None = None) -> list[str]:
    """Every setting of a (schema-valid) config that cannot work on its data, each with the
    remedy: which key to lower or which fraction to raise, with the numbers.

    `class_counts` maps dataset name -> images per class (all splits), or None where not known;
    only the datasets it names are checked (default: every dataset, counts unknown). Checks:
    the token grid against the image size; measure.per_class against sampling.baseline_per_class
    and against the held-out images per class (the real data are measured at the same N as every
    sample set); paths vs continuations of the nested probes; a training image in every class;
    every coarse alphabet in measure.coarse_k below the codebook size."""
    if class_counts is None:
        class_counts = dict.fromkeys(config["datasets"])
    per_class, baseline = config["measure"]["per_class"], config["sampling"]["baseline_per_class"]
    problems = []
    if baseline < per_class:
        problems.append(
            f"sampling.baseline_per_class={baseline} is below measure.per_class={per_class}: every baseline "
            f"sample set is measured at measure.per_class samples per class. Raise sampling.baseline_per_class "
            f"to at least {per_class} or lower measure.per_class to at most {baseline}.")
    for name, probe in config["probes"].items():
        if "paths" in probe and probe["paths"] < probe["continuations"]:
            problems.append(
                f"probes.{name}: paths={probe['paths']} < continuations={probe['continuations']}: the path split "
                f"draws one continuation from each of R different paths (needs paths >= continuations). Raise "
                f"probes.{name}.paths to at least {probe['continuations']} or lower probes.{name}.continuations "
                f"to at most {probe['paths']}.")
    for name, counts in class_counts.items():
        spec = config["datasets"][name]
        if spec["source"] == "pretrained":  # the backend's VQ sets K and the grid: record_checkpoint checks it
            problems += _pretrained_problems(name, spec)
            if spec["backend"] not in config["families"]:
                problems.append(f"datasets.{name}.backend is {spec['backend']}, which is not under `families`: add "
                                f"families.{spec['backend']} with its operating points (neutral, standard), or "
                                f"nothing of the backend is sampled.")
            if counts:
                problems += _split_problems(name, counts, spec["heldout_fraction"], per_class)
            continue
        problems += _path_problems(name, spec)
        problems += _coarse_problems(name, spec["tokenizer"]["codebook_size"], config["measure"].get("coarse_k", []))
        size, grid = spec["image_size"], spec["tokenizer"]["grid"]
        factor = size // grid
        if grid > size or size % grid or factor & (factor - 1):
            fits = sorted(size >> k for k in range(size.bit_length()) if size % (1 << k) == 0)
            problems.append(
                f"datasets.{name}.tokenizer.grid={grid} does not fit datasets.{name}.image_size={size}: the "
                f"tokenizer halves the image with each stride-2 convolution, so image_size/grid must be a power "
                f"of two. Set datasets.{name}.tokenizer.grid to one of {fits}, or change image_size.")
        if counts:
            problems += _split_problems(name, counts, spec["heldout_fraction"], per_class)
    return problems


def _pretrained_problems(name: str, spec: dict) -> list[str]:
    """A pretrained dataset's checkpoint and conditions, checked before any job (and any GPU time):
    unset or missing paths, and conditions that do not name what the backend reads."""
    from ibdiv.core import registry

    backend, checkpoint = spec["backend"], spec["checkpoint"]
    problems = []
    # what a user fills in: the backend module's FOLDER_HINT (imported only to say it)
    hint = lambda: registry.implementation(backend).FOLDER_HINT
    if checkpoint is None:
        problems.append(f"datasets.{name}.checkpoint is not set: fill in the path of {hint()}.")
    elif isinstance(checkpoint, str) and not Path(checkpoint).is_dir():
        problems.append(f"datasets.{name}.checkpoint: {checkpoint} is not a folder: fill in the path of {hint()}.")
    key = registry.family(backend).condition
    for i, condition in enumerate(spec["conditions"]):
        where = f"datasets.{name}.conditions[{i}] ({condition['name']})"
        other = sorted({"class_id", "prompt"} - {key} & set(condition))
        if key not in condition:
            problems.append(f"{where}: the {backend} backend is conditioned on a {key}: set {key}.")
        if other:
            problems.append(f"{where}: the {backend} backend reads no {other[0]} (it is conditioned on a {key}): remove it.")
        if "render_shapes" in spec:
            continue
        folder = condition.get("images")
        if folder is None:
            problems.append(f"{where}.images is not set: fill in a folder of real images of {condition['name']}.")
        elif not Path(folder).is_dir() or not any(is_image(p) for p in Path(folder).iterdir()):
            problems.append(f"{where}.images: {folder} is not a folder with images ({', '.join(sorted(datasets.IMAGE_SUFFIXES))}).")
    return problems


def _path_problems(name: str, spec: dict) -> list[str]:
    """The file or folder a `source: npz | folder` dataset names must exist before any job plans."""
    source, path = spec["source"], spec.get("path")
    if source == "npz" and not Path(path).is_file():
        what = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
        return [f"datasets.{name}.path: {path} {what}: give an .npz with `images` (n, H, W) and `labels` (n,) "
                f"(docs/config.md), relative to the checkout."]
    if source == "folder":
        root = Path(path)
        if not root.is_dir():
            return [f"datasets.{name}.path: {path} is not a folder: give a folder with one subfolder of images per "
                    f"class (docs/config.md), relative to the checkout."]
        if not any(d.is_dir() for d in root.iterdir()):
            return [f"datasets.{name}.path: {path} has no class subfolders: put each class's images in a subfolder "
                    f"named after the class."]
    return []


def _coarse_problems(name: str, K: int, coarse_k) -> list[str]:
    """A coarse alphabet must be smaller than the codebook it coarse-grains (DESIGN §13)."""
    big = [k for k in coarse_k if k >= K]
    if not big:
        return []
    return [f"measure.coarse_k={list(coarse_k)} has {big} not below datasets.{name}.tokenizer.codebook_size={K}: "
            f"a coarse alphabet K' maps the K codes to fewer clusters. Use values below {K} in measure.coarse_k "
            f"(or raise the codebook size)."]


def _split_problems(name: str, counts: dict, fraction: float, per_class: int) -> list[str]:
    held = {c: heldout_count(n, fraction) for c, n in counts.items()}
    problems = []
    no_train = [c for c, n in counts.items() if n - held[c] < 1]
    if no_train:
        problems.append(
            f"datasets.{name}: heldout_fraction={fraction} leaves no training image in class(es) "
            f"{_some(no_train)}. Lower datasets.{name}.heldout_fraction or add images.")
    short = [c for c in counts if held[c] < per_class]
    if short:
        fewest = min(held.values())
        detail = ", ".join(f"{c!r}: {held[c]} of {counts[c]}" for c in short[:4]) + (
            f", ... ({len(short) - 4} more)" if len(short) > 4 else "")
        remedies = [f"lower measure.per_class to at most {fewest}"] if fewest >= 2 else []
        needed = _fraction_for(counts, per_class)
        if needed is not None:
            remedies.append(f"raise datasets.{name}.heldout_fraction to at least {needed} (fewer training images)")
        else:
            remedies.append("add images to the smallest classes")
        problems.append(
            f"datasets.{name}: measure.per_class={per_class} needs {per_class} held-out images in every class (the "
            f"real data are measured at the same N as every sample set), but heldout_fraction={fraction} holds out "
            f"fewer in {len(short)} of {len(counts)} classes (held out of all: {detail}). "
            + _sentence(" or ".join(remedies)))
    return problems


def _fraction_for(counts: dict, per_class: int) -> float | None:
    """Smallest held-out fraction (in steps of 0.01) that holds out `per_class` images of every
    class and still leaves one to train on; None if there is none."""
    if min(counts.values()) < 1:
        return None
    start = int(100 * (per_class - 1) / min(counts.values()))  # rounding may reach per_class a bit below
    for hundredths in range(max(start, 1), 100):
        f = hundredths / 100
        if all(per_class <= heldout_count(n, f) < n for n in counts.values()):
            return f
    return None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _some(items, k: int = 6) -> str:
    items = list(items)
    return ", ".join(map(repr, items[:k])) + (f", ... ({len(items) - k} more)" if len(items) > k else "")


def check_dataset_settings(config: dict, class_counts: dict | None = None) -> None:
    """Raise DatasetSettingsError listing every problem `settings_problems` finds."""
    problems = list(dict.fromkeys(settings_problems(config, class_counts)))
    if problems:
        raise DatasetSettingsError("settings that do not fit the data (checked before any job runs):\n  - "
                                   + "\n  - ".join(problems))
