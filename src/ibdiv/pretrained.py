"""A pretrained backend as a dataset of the DAG (DESIGN §12, issue 13): first cut, llamagen only.

A `datasets.<name>` entry with `source: pretrained` names a backend (a registry family whose
model is "checkpoint"), its checkpoint (a folder, or `tiny:` sizes for a random model the DAG
builds), and `conditions`: [{name, class_id, images}]. Condition i of the list is the DAG's
class label i everywhere (token caches, classifier, tables); `class_id` is the backend's own
condition (an ImageNet class for LlamaGen), applied when the sampler loads (`load_sampler`).

What the rest of the pipeline reads stays what it was:
* `data/prepared/<d>.npz`: grey images at `image_size` (the in-house classifier's input), plus
  `rgb` (n, 3, S, S) uint8 at the backend VQ's image size, which `tokens.encode_dataset` encodes;
* `results/<d>/tokenizer/model.pt`: not weights but a small JSON pointer (`write_tokenizer_pointer`)
  that `ibdiv.tokenizer.load_tokenizer` turns into a `BackendTokenizer`: the backend's VQ behind
  the in-house tokenizer's interface (cfg.codebook_size / grid / image_size, quantizer.codebook,
  encode of grey or RGB images, decode to grey images at the classifier's size);
* `results/<d>/backend.json`: `ibdiv.checkpoints.record` of the folder plus the class ids, the
  input of every job that loads the backend (a replaced checkpoint reruns them).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ibdiv import registry, shapes

POINTER_KIND = "ibdiv.pretrained.tokenizer"


# --- real images --------------------------------------------------------------------------------

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


def load_condition_images(folders: list, rgb_size: int, grey_size: int):
    """(rgb uint8 (n, 3, rgb_size, rgb_size), grey float32 (n, grey_size, grey_size) in [0, 1],
    labels int64 = index of the folder in `folders`)."""
    from PIL import Image

    from ibdiv.data import IMAGE_SUFFIXES, DatasetError

    rgb, grey, labels = [], [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if Path(folder).is_dir() else []
        if not files:
            raise DatasetError(f"{folder}: condition folder missing or without images")
        for file in files:
            with Image.open(file) as im:
                colour = im.convert("RGB")
                rgb.append(np.asarray(colour.resize((rgb_size, rgb_size), Image.BICUBIC), dtype=np.uint8)
                           .transpose(2, 0, 1))
                grey.append(np.asarray(colour.convert("L").resize((grey_size, grey_size), Image.BILINEAR),
                                       dtype=np.float32) / 255.0)
            labels.append(label)
    return np.stack(rgb), np.stack(grey), np.asarray(labels, dtype=np.int64)


def load_prepared_source(spec: dict, backend: dict):
    """(Dataset of grey images at spec["image_size"], rgb uint8 at the backend VQ's image size) of a
    `source: pretrained` dataset entry whose conditions name their folders."""
    from ibdiv.data import Dataset

    if backend["family"] != "llamagen":
        raise NotImplementedError(f"pretrained datasets are wired for llamagen only so far, not {backend['family']!r}")
    llamagen = registry.implementation("llamagen")

    sizes = json.loads((Path(backend["folder"]) / llamagen.SIZES_FILE).read_text())
    vq_size = backend["grid"] * llamagen.vq_config(sizes["vq"]).downsample
    rgb, grey, labels = load_condition_images([c["images"] for c in spec["conditions"]], vq_size, spec["image_size"])
    return Dataset(grey, labels, [c["name"] for c in spec["conditions"]]), rgb


# --- checkpoints --------------------------------------------------------------------------------

def build_tiny_checkpoint(folder, backend: str, tiny: dict, n_classes: int, seed: int) -> Path:
    """A random model of the backend's architecture at `tiny` sizes, written with the backend's own
    save function (what the pretrained-smoke config runs on)."""
    import torch

    if backend != "llamagen":
        raise NotImplementedError(f"tiny checkpoints are wired for llamagen only so far, not {backend!r}")
    llamagen = registry.implementation("llamagen")  # not imported by name: in-house jobs do not depend on it
    vq_cfg = llamagen.VQConfig(**tiny["vq"])
    grid = tiny["grid"]
    torch.manual_seed(seed)
    gpt = llamagen.GPT.build(vq_cfg.codebook_size, grid * grid, n_classes, tiny["gpt"])
    # as tests/test_llamagen.tiny_gpt: a sharper head than the 0.02 init, so logits are not uniform
    torch.nn.init.normal_(gpt.output.weight, std=tiny.get("output_std", 0.4))
    torch.nn.init.normal_(gpt.cls_embedding.embedding_table.weight, std=1.0)
    vq = llamagen.VQModel(vq_cfg)
    return llamagen.save_checkpoint(folder, gpt.eval(), vq.eval())


def backend_spec(record: dict, class_ids: list[int], image_size: int) -> dict:
    """What backend.json holds: the checkpoint record, the class ids of conditions 0..C-1, the
    classifier's image size and the token grid (the generator's block)."""
    if record["family"] != "llamagen":
        raise NotImplementedError(f"backend.json is wired for llamagen only so far, not {record['family']!r}")
    llamagen = registry.implementation("llamagen")

    sizes = json.loads((Path(record["folder"]) / llamagen.SIZES_FILE).read_text())
    grid = llamagen.gpt_config(sizes["gpt"]).grid
    return {**record, "class_ids": [int(c) for c in class_ids], "image_size": int(image_size), "grid": int(grid)}


def select_classes(model, class_ids: list[int]):
    """A LlamaGen GPT whose class i is the given model's class `class_ids[i]` (the null row kept
    last): the DAG's labels 0..C-1 sample the configured conditions, and condition noise (I2)
    acts on the table of the configured conditions."""
    import torch

    llamagen = registry.implementation("llamagen")

    table = model.cls_embedding.embedding_table.weight
    n = model.config.num_classes
    if max(class_ids) >= n or min(class_ids) < 0:
        raise ValueError(f"class ids {class_ids} outside the checkpoint's {n} classes")
    config = llamagen.GPTConfig(**{**model.spec(), "num_classes": len(class_ids)})
    out = llamagen.GPT(config).to(table.device)
    state = model.state_dict()
    rows = torch.as_tensor([*class_ids, n], device=table.device)
    state["cls_embedding.embedding_table.weight"] = table.detach()[rows].clone()
    out.load_state_dict(state)
    return out.eval()


def load_sampler(family: str, spec_path, device="cpu"):
    """The backend's generator from backend.json, with the configured conditions as classes."""
    spec = json.loads(Path(spec_path).read_text())
    model = registry.implementation(family).load_checkpoint(spec["folder"], device=device)
    if family == "llamagen":
        model = select_classes(model, spec["class_ids"])
    return model


# --- the backend's VQ behind the in-house tokenizer's interface -----------------------------------

def write_tokenizer_pointer(path, spec: dict) -> None:
    from ibdiv.io import save_text

    save_text(path, json.dumps({"kind": POINTER_KIND, "family": spec["family"], "folder": spec["folder"],
                                "sha256": spec["sha256"], "image_size": spec["image_size"],
                                "grid": spec["grid"]}, indent=2) + "\n")


def is_tokenizer_pointer(path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"{"


def load_tokenizer_pointer(path) -> "BackendTokenizer":
    pointer = json.loads(Path(path).read_text())
    if pointer.get("kind") != POINTER_KIND:
        raise ValueError(f"{path}: not a backend tokenizer pointer")
    return BackendTokenizer(pointer["family"], pointer["folder"], pointer["image_size"], pointer["grid"])


class BackendTokenizer:
    """A backend's VQ as the in-house `VQVAE` is read by the measuring code: `cfg.codebook_size`,
    `cfg.grid`, `cfg.image_size` (the classifier's size), `quantizer.codebook` (K, d) vectors
    (for the coarse K -> K' map), `encode` (grey (n, H, W) or RGB (n, 3, H, W) images, float in
    [0, 1] or uint8) -> codes, `decode` codes -> grey images (n, image_size, image_size) in [0, 1]."""

    def __init__(self, family: str, folder, image_size: int, grid: int, device="cpu"):
        if family != "llamagen":
            raise NotImplementedError(f"the tokenizer adapter is wired for llamagen only so far, not {family!r}")
        self.family, self.device = family, device
        self.vq = registry.implementation(family).load_tokenizer(folder, device=device)
        self.vq_image_size = int(grid) * self.vq.config.downsample  # the backend's image size
        codebook = self.vq.quantize.codebook().detach().cpu()
        self.quantizer = SimpleNamespace(codebook=codebook)
        self.cfg = SimpleNamespace(codebook_size=int(codebook.shape[0]), grid=int(grid), image_size=int(image_size))

    def _as_rgb(self, images: np.ndarray):
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(np.asarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.dim() == 3:  # grey
            x = x[:, None].expand(-1, 3, -1, -1)
        if x.shape[-1] != self.vq_image_size:
            x = F.interpolate(x, size=(self.vq_image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        return x

    def encode(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        import torch

        x = self._as_rgb(images)
        codes = torch.cat([self.vq.encode(x[i:i + batch_size].to(self.device)).cpu()
                           for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, 0, dtype=torch.long)
        return codes.numpy()

    def decode(self, codes: np.ndarray, batch_size: int = 256) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = []
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        for i in range(0, len(codes), batch_size):
            rgb = self.vq.decode(codes[i:i + batch_size].to(self.device)).cpu()
            grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
            size = self.cfg.image_size
            if grey.shape[-1] != size:
                grey = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out.append(grey[:, 0].clamp(0, 1))
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.image_size, self.cfg.image_size), np.float32)
