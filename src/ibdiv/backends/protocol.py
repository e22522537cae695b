"""The module-level interface every pretrained backend module provides (`Backend`): what the
sampler (ibdiv.families.sampling), the probes (ibdiv.measure.probes.load_sampler), the held-out
scoring, the checkpoint records (ibdiv.backends.checkpoints), the DAG's backend datasets
(ibdiv.backends.pretrained), the backend VQ adapter (ibdiv.data.backend_tokenizer), the folder
owner lookup (ibdiv.core.registry.backend_owning) and the preflight checks read from it.

A backend is a module, not a class: `Backend` is a structural type the modules satisfy
(tests/test_backend_interface.py checks every registry family whose model is "checkpoint").
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Backend(Protocol):
    """A pretrained backend module (llamagen, amused, vq_diffusion)."""

    FAMILY: str  # the registry family it implements
    KNOBS: dict  # the sampler knobs it accepts, with their neutral defaults
    SCHEDULE_KNOBS: tuple  # knobs that fix the step grid: a resume must not change them
    PRIOR: type  # the generator class (an nn.Module with the sampler hooks)
    DESCRIBED: str  # its checkpoint as a sentence names it ("an aMUSEd": "... not an aMUSEd one")
    FOLDER_MARKER: str  # the file that identifies its checkpoint folder (llamagen.json, model_index.json)
    FOLDER_CLASSES: tuple  # the `_class_name` the marker must name (its pipelines); () when its presence is enough
    FOLDER_HINT: str  # what folder to fill in, shown when a configured checkpoint is unset or not a folder

    def start(self, model, classes, knobs: dict):
        """The fresh DecodeState of a batch of class ids (nothing committed)."""

    def advance(self, model, state, knobs: dict, gen, perturbation=None, cut_fraction=None):
        """Run the generative process on ``state`` to the end or the cut, drawing from ``gen``."""

    def heldout_bits_per_token(self, model, tokens, labels, gen) -> float:
        """Bits per token of token grids under their class ids (an exact NLL or a bound)."""

    def check_folder(self, folder) -> Path:
        """The folder, or an error naming it and the problem (another backend's folder named with that backend)."""

    def load_checkpoint(self, folder, device="cpu"):
        """The generator of a checkpoint folder, in eval mode on ``device`` (all of its conditions)."""

    def load_conditioned(self, folder, conditions: list, device="cpu"):
        """The generator whose class i samples ``conditions[i]`` (a class id or a prompt)."""

    def load_vq(self, folder, device="cpu"):
        """The checkpoint's image VQ (what vq_encode / vq_decode / vq_codebook take)."""

    def token_grid(self, folder) -> int:
        """The side of the generator's token grid, from the folder's config files (no weights read)."""

    def vq_image_size(self, folder) -> int:
        """The side of the RGB images the VQ encodes to ``token_grid`` codes a side."""

    def vq_encode(self, vq, images):
        """RGB (n, 3, S, S) in [0, 1] -> codes (n, N) in raster order."""

    def vq_decode(self, vq, codes):
        """Codes (n, N) -> RGB (n, 3, S, S) in [0, 1]."""

    def vq_codebook(self, vq):
        """(K, d): the code vectors the quantiser compares (for the coarse K -> K' map)."""

    def build_tiny(self, folder, seed: int, n_classes: int, sizes: dict) -> Path:
        """A tiny random checkpoint of its architecture, written in its own folder format."""


def members() -> dict[str, bool]:
    """{name: callable?} of every member `Backend` declares."""
    constants = {name: False for name in Backend.__annotations__}
    functions = {name: True for name, value in vars(Backend).items() if callable(value) and not name.startswith("_")}
    return {**constants, **functions}
