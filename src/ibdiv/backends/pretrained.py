"""A pretrained backend as a dataset of the DAG (DESIGN §12, issue 13).

A `datasets.<name>` entry with `source: pretrained` names a backend (a registry family whose
model is "checkpoint": llamagen, amused, vq_diffusion), its checkpoint (a local folder, or
`{tiny: sizes}` for a random model the DAG builds) and `conditions`: [{name, class_id | prompt,
images}]. Condition i of the list is the DAG's class label i everywhere (token caches,
classifier, tables); what it names for the backend (an ImageNet class id, a
prompt: the registry's `Family.condition`) is applied when the generator loads
(`module.load_conditioned`).

Every backend module offers the same few names, so nothing here depends on which one it is:
load_conditioned, token_grid, vq_image_size, build_tiny, heldout_bits_per_token,
load_vq and vq_encode / vq_decode / vq_codebook (read by `ibdiv.data.backend_tokenizer`); the whole
interface is `ibdiv.backends.protocol.Backend`.

What the rest of the pipeline reads stays what it was:
* `data/prepared/<d>.npz`: grey images at `image_size` (the in-house classifier's input), plus
  `rgb` (n, 3, S, S) uint8 at the backend VQ's image size, which `tokens.encode_dataset` encodes;
* `results/<d>/tokenizer/model.pt`: a small JSON pointer to the backend's VQ
  (`ibdiv.data.backend_tokenizer.write_pointer`), which `tokenizer.load_tokenizer` loads behind the in-house interface;
* `results/<d>/backend.json` (`backend_spec`): the checkpoint's record (folder, per-file SHA-256)
  and the conditions, the input of every job that loads the backend: a replaced checkpoint
  reruns exactly them.

Only the backend rules (workflow/rules/pretrained.smk) import this module: it reaches the
backends through the registry, which in-house jobs must not depend on through it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ibdiv.core import registry
from ibdiv.data import shapes


def backend_module(name: str):
    """The backend's module (its DAG interface, see the module docstring)."""
    if registry.family(name).model != "checkpoint":
        raise ValueError(f"{name!r} is not a pretrained backend")
    return registry.implementation(name)


# --- conditions and real images ------------------------------------------------------------------

def backend_conditions(spec: dict) -> list:
    """What each condition names for the backend (class ids or prompts), in the DAG's label order."""
    key = registry.family(spec["backend"]).condition
    missing = [c["name"] for c in spec["conditions"] if key not in c]
    if missing:
        raise ValueError(f"backend {spec['backend']} needs {key!r} in every condition; missing in {missing}")
    return [c[key] for c in spec["conditions"]]


def tiny_n_classes(spec: dict) -> int:
    """Classes of a tiny class-conditional checkpoint: enough for the largest configured class id."""
    ids = [c["class_id"] for c in spec["conditions"] if "class_id" in c]
    return max(ids) + 1 if ids else len(spec["conditions"])


def render_condition_images(root, names: list[str], n_per_condition: int, image_size: int, seed: int) -> None:
    """Demo reference images: condition i drawn as shapes class i (mod 8), one PNG folder per
    condition under `root` (RGB, the grey render in all three channels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for i, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        classes = np.full(n_per_condition, i % len(shapes.CLASS_NAMES))
        images = shapes.render(classes, shapes.sample_layouts(n_per_condition, rng), image_size, rng)
        for j, image in enumerate(images):
            pixels = np.round(image * 255).astype(np.uint8)
            Image.fromarray(np.stack([pixels] * 3, axis=-1), "RGB").save(folder / f"{j:05d}.png")


def load_condition_images(folders: list, rgb_size: int, grey_size: int, crop: str = "center"):
    """(rgb uint8 (n, 3, rgb_size, rgb_size), grey float32 (n, grey_size, grey_size) in [0, 1],
    labels int64 = index of the folder in `folders`). `crop` (the dataset's key): "center" takes
    each image's centred square before resizing, as the backends' training images were made (the
    VQ's reference tokens and the classifier's images both see that square); "squash" resizes the
    whole image to a square."""
    from PIL import Image

    from ibdiv.data.datasets import image_files, read_image, square

    rgb, grey, labels = [], [], []
    for label, folder in enumerate(folders):
        for file in image_files(folder, "condition"):
            colour = read_image(file, "RGB")
            rgb.append(np.asarray(square(colour, rgb_size, crop, Image.BICUBIC), dtype=np.uint8).transpose(2, 0, 1))
            grey.append(np.asarray(square(colour.convert("L"), grey_size, crop, Image.BILINEAR),
                                   dtype=np.float32) / 255.0)
            labels.append(label)
    return np.stack(rgb), np.stack(grey), np.asarray(labels, dtype=np.int64)


def load_prepared_source(spec: dict, backend: dict):
    """(Dataset of grey images at spec["image_size"], rgb uint8 at the backend VQ's image size) of a
    `source: pretrained` dataset entry whose conditions name their folders, made square as its
    `crop` key says (default "center")."""
    from ibdiv.data.datasets import Dataset

    rgb, grey, labels = load_condition_images([c["images"] for c in spec["conditions"]],
                                              backend["vq_image_size"], spec["image_size"],
                                              spec.get("crop", "center"))
    return Dataset(grey, labels, [c["name"] for c in spec["conditions"]]), rgb


# --- checkpoints ---------------------------------------------------------------------------------

def build_tiny_checkpoint(folder, spec: dict, seed: int) -> Path:
    """A random model of the backend's architecture at the `tiny` sizes, written with the backend's
    own save function and read back later by its real loader (the pretrained-smoke config)."""
    return backend_module(spec["backend"]).build_tiny(folder, seed, tiny_n_classes(spec), spec["checkpoint"]["tiny"])


def backend_spec(record: dict, spec: dict) -> dict:
    """What backend.json holds: the checkpoint record (`checkpoints.record`), the backend's module,
    the conditions as the backend reads them, the classifier's image size, the token grid and the
    VQ's image size (read from the folder's config files; no weights load)."""
    module = backend_module(record["family"])
    folder = record["folder"]
    return {**record, "implementation": module.__name__, "conditions": backend_conditions(spec),
            "image_size": int(spec["image_size"]), "grid": int(module.token_grid(folder)),
            "vq_image_size": int(module.vq_image_size(folder))}

