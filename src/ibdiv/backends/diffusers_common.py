"""What the two diffusers backends (``amused``, ``vq_diffusion``) share, written once.

* The checkpoint folder a diffusers pipeline's ``save_pretrained`` writes (``PipelineInterface``):
  its check (``check_folder``), its sizes from the config files (``token_grid``, ``vq_image_size``),
  the VQ (``load_vq``), the prompts as conditions (``load_conditioned``) and the tiny random
  checkpoint (``build_tiny``): the DAG's backend interface (``ibdiv.backends.protocol.Backend``),
  parametrised by each backend's layout, loader and tiny builder.
* The tiny CLIP tokenizer both tiny checkpoints save (``tiny_text_tokenizer``).
* diffusers classes imported without the package ``__init__``s that import every model of their
  kind (``diffusers_classes``): most jobs need only the VQ, and a job pays its imports.
* Pieces of the sampler both rewrite of their pipeline's loop: the [negative, positive] network
  inputs of a guided batch (``Branches``), the per-sample perturbed code rows read through a forward
  hook (``reading_codes``), the class ids checked against the prompts set (``PromptedGenerator``),
  the absorbing-diffusion held-out bound.

May import what a backend may (`core`, `data`, `families`); imports no backend module.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import tempfile
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ibdiv.backends.checkpoints import refuse_other_backends
from ibdiv.families.backbone import CodeReads, code_reads
from ibdiv.families.masking import heldout_bits_per_token as _absorbing_bound

MODEL_INDEX = "model_index.json"  # what save_pretrained writes at the top: its _class_name is the pipeline's


# ----------------------------------------------------------------------------------------------
# The checkpoint folder and the DAG's backend interface
# ----------------------------------------------------------------------------------------------

def check_pipeline_folder(folder, *, family: str, described: str, pipelines: tuple[str, ...],
                          subfolders: tuple[str, ...], config_files: dict) -> Path:
    """Raise an error naming the folder and the problem unless it is a saved diffusers pipeline
    of this backend: not another backend's folder (named with the backend that reads it,
    ``registry.backend_owning``), no other pipeline in model_index.json, every component subfolder
    present, each `config_files` entry {subfolder: (file, class)} naming its class. `described` is
    the backend as a sentence says it ("an aMUSEd"); `pipelines[0]` is the one save_pretrained writes."""
    folder = Path(folder)
    name = described.split(" ", 1)[1]
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} checkpoint folder {folder} does not exist")
    refuse_other_backends(folder, family, described)
    index = folder / MODEL_INDEX
    if index.is_file():
        found = json.loads(index.read_text()).get("_class_name")
        if found not in pipelines:
            raise ValueError(f"{folder} is a {found} checkpoint ({MODEL_INDEX}), not {described} one "
                             f"({pipelines[0]})")
    missing = [s for s in subfolders if not (folder / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing subfolder(s) {missing} of {described} checkpoint "
                                f"(expected {list(subfolders)}, the layout {pipelines[0]}.save_pretrained writes)")
    for sub, (file, expected) in config_files.items():
        path = folder / sub / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder / sub} is not a saved {expected}")
        found = json.loads(path.read_text()).get("_class_name")
        if found != expected:
            raise ValueError(f"{path} describes a {found}, not the {expected} of {described} checkpoint: "
                             f"{folder} is not {described} checkpoint")
    return folder


def pipeline_sizes(folder: Path) -> tuple[int, int]:
    """(token grid side, VQ image side) of a checked diffusers pipeline folder, from its config
    files (no weights read): the transformer's sample_size, times the VQ's downsampling factor
    2 ** (levels - 1) (the pipelines' vae_scale_factor)."""
    config = lambda sub: json.loads((Path(folder) / sub / "config.json").read_text())
    grid = int(config("transformer")["sample_size"])
    return grid, grid * 2 ** (len(config("vqvae")["block_out_channels"]) - 1)


def checked_prompts(folder, conditions) -> list[str]:
    """The conditions of a text backend: a non-empty list of non-empty prompts."""
    if not conditions or not all(isinstance(c, str) and c for c in conditions):
        raise ValueError(f"{folder}: conditions {conditions!r} are not a non-empty list of non-empty prompts")
    return list(conditions)


def fixed_tiny_sizes(folder, backend: str, sizes: dict) -> None:
    """A text backend's tiny checkpoint has diffusers' test sizes: a config that sets any fails."""
    if sizes:
        raise ValueError(f"{folder}: the {backend} backend's tiny checkpoint has fixed sizes: "
                         f"sizes key(s) {sorted(sizes)} cannot be set")


def load_components(folder: Path, components: tuple, described: str) -> dict:
    """{subfolder: cls.from_pretrained(folder / subfolder)} for (subfolder, cls) pairs, local files
    only; a component that does not load is an error naming the subfolder and the library's reason."""
    parts = {}
    for sub, cls in components:
        try:
            parts[sub] = cls.from_pretrained(folder / sub, local_files_only=True)
        except (OSError, ValueError, EnvironmentError) as error:
            raise ValueError(f"{folder / sub}: cannot load the {cls.__name__} of {described} checkpoint: "
                             f"{error}") from error
    return parts


@dataclass(frozen=True)
class PipelineInterface:
    """The DAG's backend interface of a diffusers backend, parametrised by what differs: its folder
    layout, its loader (``load_checkpoint(folder, device, prompts=...)``) and its tiny builder
    (``save_tiny(folder, seed)``). A backend module binds the functions under its own names
    (``functions``)."""

    family: str
    described: str  # "an aMUSEd"
    pipelines: tuple[str, ...]  # the model index classes of this layout, the one save_pretrained writes first
    subfolders: tuple[str, ...]
    config_files: dict  # {subfolder: (file, the class its _class_name must be)}
    load_checkpoint: Callable
    save_tiny: Callable

    def check_folder(self, folder) -> Path:
        """Raise an error naming the folder and the problem unless it is this backend's checkpoint."""
        return check_pipeline_folder(folder, family=self.family, described=self.described, pipelines=self.pipelines,
                                     subfolders=self.subfolders, config_files=self.config_files)

    def load_conditioned(self, folder, conditions: list[str], device="cpu"):
        """The generator whose class i samples the prompt ``conditions[i]``: the DAG's labels 0..C-1
        are the configured prompts, and condition noise (I2) scales to their encodings only."""
        return self.load_checkpoint(folder, device, prompts=checked_prompts(folder, conditions))

    def token_grid(self, folder) -> int:
        """The side of the generator's token grid (the transformer's sample_size; no weights read)."""
        return pipeline_sizes(self.check_folder(folder))[0]

    def vq_image_size(self, folder) -> int:
        """The side of the images the VQ encodes to ``token_grid`` codes a side."""
        return pipeline_sizes(self.check_folder(folder))[1]

    def load_vq(self, folder, device="cpu"):
        """The checkpoint's image VQ (a diffusers VQModel: decodes tokens, encodes the real reference images)."""
        (VQModel,) = diffusers_classes("models.autoencoders.vq_model:VQModel")
        folder = self.check_folder(folder)
        return VQModel.from_pretrained(folder / "vqvae", local_files_only=True).to(device).eval()

    def build_tiny(self, folder, seed: int, n_classes: int, sizes: dict) -> Path:
        """A tiny random checkpoint written by the backend's ``save_tiny_checkpoint`` (diffusers' test
        sizes). ``n_classes`` is not used (the conditions are prompts, given at load time); ``sizes``
        must be empty (the sizes are fixed)."""
        fixed_tiny_sizes(folder, self.family, sizes)
        return self.save_tiny(folder, seed)

    def functions(self) -> tuple:
        """(check_folder, load_conditioned, token_grid, vq_image_size, load_vq, build_tiny)."""
        return (self.check_folder, self.load_conditioned, self.token_grid, self.vq_image_size, self.load_vq,
                self.build_tiny)


# diffusers' package __init__s that import every model of their kind (every autoencoder, U-Net and
# transformer, and through them the loaders, scipy.stats, ...): `from diffusers import VQModel`
# cost 4.0 CPU-s over torch, the VQ's own module path 2.2 (python -X importtime, 2026-12-07).
EAGER_PACKAGES = ("diffusers.models.autoencoders", "diffusers.models.unets", "diffusers.models.transformers")


def diffusers_classes(*names: str) -> tuple:
    """diffusers classes by ``"module:Class"`` (module relative to ``diffusers``), imported with
    the eager package inits of ``EAGER_PACKAGES`` replaced, while importing, by bare packages of
    the same folder: a module's own relative imports work, the package's siblings are not loaded.
    The bare packages are removed afterwards, so a later ``import diffusers.models.unets`` (or
    anything of the rest of diffusers) imports the real package as usual."""
    root = Path(importlib.util.find_spec("diffusers").submodule_search_locations[0])
    bare = {}
    for package in EAGER_PACKAGES:
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
            bare[package] = sys.modules[package] = module
    try:
        return tuple(getattr(importlib.import_module(f"diffusers.{module}"), name)
                     for module, _, name in (spec.partition(":") for spec in names))
    finally:
        for package, module in bare.items():
            if sys.modules.get(package) is module:
                del sys.modules[package]


def vq_codebook(vq) -> torch.Tensor:
    """(K, d): the code vectors the quantiser compares (its embedding weight)."""
    return vq.quantize.embedding.weight.detach()


def square_side(codes: torch.Tensor) -> int:
    """The side g of token grids (n, g * g); an error unless the count is a square."""
    g = math.isqrt(codes.shape[1])
    if g * g != codes.shape[1]:
        raise ValueError(f"{codes.shape[1]} codes per image are not a square grid")
    return g


# ----------------------------------------------------------------------------------------------
# The tiny CLIP tokenizer of the tiny checkpoints
# ----------------------------------------------------------------------------------------------

TINY_TEXT_LENGTH = 16  # tokenizer max length and text positions (CLIP uses 77)


def tiny_text_tokenizer():
    """A CLIPTokenizer (the prompts' text tokenizer, not an image VQ) built offline: lowercase
    letters, digits and a few marks (plain and word-final), no merges. Every prompt of such
    characters tokenises to real ids (not unk). Its files are read once, from a temporary folder:
    the pipeline's save_pretrained writes them again into the checkpoint's tokenizer/."""
    from transformers import CLIPTokenizer

    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                             model_max_length=TINY_TEXT_LENGTH)


# ----------------------------------------------------------------------------------------------
# The sampler pieces both backends share
# ----------------------------------------------------------------------------------------------

def prompt_content(tokenizer, prompts: list[str], **tokenize) -> torch.Tensor:
    """(n, L) bool, L = the tokenizer's max length: the positions of each prompt's own tokens,
    as the backend tokenizes it (padded to max length; ``tokenize``: its other arguments). Not the
    special tokens (start and end of text) nor the padding, by the tokenizer's attention and
    special-tokens masks (CLIP pads with its end-of-text id: the ids alone cannot tell)."""
    length = tokenizer.model_max_length
    masks = []
    for prompt in prompts:  # one at a time: untruncated (VQ-Diffusion), a long prompt is sliced as its ids
        out = tokenizer(prompt, padding="max_length", max_length=length, return_tensors="pt",
                        return_attention_mask=True, return_special_tokens_mask=True, **tokenize)
        masks.append((out.attention_mask.bool() & ~out.special_tokens_mask.bool())[:, :length])
    return torch.cat(masks)


def content_rms(hidden: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Per-element RMS of text states ``hidden`` (n, L, D) over the prompts' content positions
    ``content`` (n, L) (``prompt_content``): the start-of-text state (CLIP's carries activations
    far larger than the words') and the padding do not set the scale. Over all positions if no
    prompt has a content token (a blank prompt)."""
    states = hidden.detach().float()
    content = content.to(states.device)
    return (states[content] if content.any() else states).pow(2).mean().sqrt()


class PromptedGenerator(nn.Module):
    """A diffusers generator whose class ids are prompts: the sizes the sampler and probes read
    (its ``config`` has vocab_size, mask_id and n_classes)."""

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def check_classes(self, classes: torch.Tensor) -> None:
        """An error unless every class id has a prompt."""
        if len(classes) and int(classes.max()) >= self.config.n_classes:
            raise ValueError(f"class id {int(classes.max())} has no prompt: {self.config.n_classes} prompts are set")


@contextmanager
def reading_codes(embedding: nn.Embedding, code_table: CodeReads | None):
    """While open, ``embedding`` returns, for code ids (below the table's K), each sample's rows
    of ``code_table`` instead of its own, except at its path (``CodeReads``: the tokens committed
    at the cut stay the table's, as do the MASK row and those above); without a code table
    nothing changes. The ids are the whole grid (in raster order)."""
    if code_table is None:
        yield
        return

    def read_perturbed(module, args, output):
        return code_table.embed(args[0], output).to(output.dtype)

    handle = embedding.register_forward_hook(read_perturbed)
    try:
        yield
    finally:
        handle.remove()


class Branches:
    """The network inputs of one batch, as the pipelines batch them: the conditional branch's
    conditions (``model.conditions`` with the condition noise) and code table (the codebook noise
    on rows 0..K-1, None without it); when guided (``cfg_scale != 1``) [negative, positive] for both
    (``model.with_negative``; the code table read by both branches)."""

    def __init__(self, model, classes, cfg_scale: float, perturbation):
        cond_noise = perturbation.cond_noise if perturbation is not None else None
        conditions = model.conditions(classes, cond_noise)
        code_table = code_reads(model.tok_emb.weight[: model.vocab_size], perturbation)
        self.scale, self.guided = cfg_scale, cfg_scale != 1.0
        if self.guided:
            conditions = model.with_negative(conditions)
            if code_table is not None:
                code_table = code_table.twice()
        self.conditions, self.code_table = conditions, code_table

    def batch(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token grids the network reads: twice over when guided."""
        return torch.cat([tokens, tokens]) if self.guided else tokens

    def guide(self, out: torch.Tensor) -> torch.Tensor:
        """``uncond + g (cond - uncond)`` of a guided batch's output (the output itself unguided)."""
        if not self.guided:
            return out
        uncond, cond = out.chunk(2)
        return uncond + self.scale * (cond - uncond)


SCORE_LEVELS = 16  # mask sizes per held-out sequence (Monte-Carlo ELBO): cost 16 network rows a sequence
SCORE_ROWS_PER_CALL = 16  # masked rows per network call where no memory budget sizes it (ibdiv.pipeline.sizing)


def heldout_bits_per_token(model, tokens, labels, gen: torch.Generator, *, rows_per_call: int = SCORE_ROWS_PER_CALL,
                           levels: int | None = SCORE_LEVELS) -> float:
    """Absorbing-diffusion ELBO bound (bits/token) of token grids under their prompts (the
    in-house MIM / diffusion families' bound, on the conditional, unguided network), estimated
    with ``levels`` stratified mask sizes per sequence (``masking.mask_levels``): the exact sum
    over all N sizes costs N rows of N x K logits per sequence (4.4 TB per 256 sequences at
    VQ-Diffusion ITHQ's sizes), this one ``levels`` rows, ``rows_per_call`` at a time."""
    return _absorbing_bound(model, tokens, labels, gen, levels=levels, rows_per_call=rows_per_call)
