"""LlamaGen's GPT sizes without torch: the ``ModelArgs`` fields, the published presets, the
``llamagen.json`` overlay and the parameter count they imply. ``ibdiv.backends.llamagen`` builds its
network from these; ``ibdiv.pipeline.sizing`` reads them at Snakemake start, where no job has
imported torch yet (issue 25: every job sized before it runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass
class GPTConfig:
    """Field names are the reference's ``ModelArgs`` (gpt.py); defaults are its c2i values."""

    dim: int = 768
    n_layer: int = 12
    n_head: int = 12
    vocab_size: int = 16384
    num_classes: int = 1000
    block_size: int = 256  # tokens per image: a square grid (16 x 16 at 256 px with VQ-16)
    multiple_of: int = 256  # SwiGLU hidden width rounded up to a multiple of this
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    # the names the rest of ibdiv reads (sampling.condition_noise, ar.start, ...)
    @property
    def d_model(self) -> int:
        return self.dim

    @property
    def n_classes(self) -> int:
        return self.num_classes

    @property
    def seq_len(self) -> int:
        return self.block_size

    @property
    def grid(self) -> int:
        return math.isqrt(self.block_size)

    @property
    def ffn_hidden(self) -> int:
        """Llama's SwiGLU width: 2/3 of 4 dim, optionally scaled, rounded up (gpt.py FeedForward)."""
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def parameters(self) -> int:
        """Parameters of the GPT these sizes build (llamagen.GPT; checked against it by the tests):
        class table (with the null row), code table, per block the fused q/k/v, the output
        projection, SwiGLU's three matrices and two RMSNorm weights, the final norm, the head."""
        d, hidden = self.dim, self.ffn_hidden
        block = 4 * d * d + 3 * d * hidden + 2 * d
        return (self.num_classes + 1) * d + self.vocab_size * d + self.n_layer * block + d + d * self.vocab_size


# Published sizes (reference: gpt.py GPT_B ... GPT_XXXL, GPT_3B; vocab 16384 and 1000 classes are
# sample_c2i.py's defaults). The block is 16 x 16 for 256 px with VQ-16 (c2i_B_256.pt, c2i_L_256.pt);
# the XL / XXL / 3B c2i releases are 384 px: give "block_size": 576 (24 x 24) beside the preset.
GPT_PRESETS = {
    "GPT-B": {"dim": 768, "n_layer": 12, "n_head": 12},  # 111M
    "GPT-L": {"dim": 1024, "n_layer": 24, "n_head": 16},  # 343M
    "GPT-XL": {"dim": 1280, "n_layer": 36, "n_head": 20},  # 775M
    "GPT-XXL": {"dim": 1536, "n_layer": 48, "n_head": 24},  # 1.4B
    "GPT-XXXL": {"dim": 2560, "n_layer": 48, "n_head": 40},  # 3.9B
    "GPT-3B": {"dim": 3200, "n_layer": 24, "n_head": 32},  # 3.1B (c2i_3B_384.pt)
}


def gpt_config(entry: dict) -> GPTConfig:
    """A config from a ``llamagen.json`` entry: an optional ``preset`` overlaid with explicit sizes."""
    return GPTConfig(**overlay_sizes(entry, GPT_PRESETS, GPTConfig))


def overlay_sizes(entry: dict, presets: dict, cls) -> dict:
    """The fields of ``cls`` an entry gives: its ``preset``'s, overlaid with its explicit ones
    (``file`` dropped); an unknown preset or field raises ValueError naming it."""
    entry = {k: v for k, v in entry.items() if k != "file"}
    preset = entry.pop("preset", None)
    if preset is not None and preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(presets)}")
    unknown = sorted(set(entry) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown size field(s) {unknown} for {cls.__name__}; known: {[f.name for f in fields(cls)]}")
    return {**presets.get(preset, {}), **entry}
