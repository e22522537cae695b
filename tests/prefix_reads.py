"""What a network reads for its committed path after the cut (DESIGN §4: "after the cut means after
the cut"), for the family and backend tests: the token embeddings of the first network pass of a
resume, recorded from the embedding table itself (no codebook noise) or from ``CodeReads.embed``
(codebook noise: what replaces the table's rows)."""
from contextlib import contextmanager

import torch

from ibdiv.families.backbone import CodeReads
from ibdiv.families.sampling import Perturbation, after_cut, codebook_noise, resume, sample


@contextmanager
def recording(model):
    """Yields {"table": [...], "reads": [...]}: the embedding table's outputs and CodeReads' results,
    call by call, flattened to (batch, positions, d)."""
    seen = {"table": [], "reads": []}
    embed = CodeReads.embed

    def record(self, ids, clean, offset=0):
        out = embed(self, ids, clean, offset)
        seen["reads"].append(out.reshape(len(ids), -1, out.shape[-1]).clone())
        return out

    hook = model.tok_emb.register_forward_hook(
        lambda module, args, out: seen["table"].append(out.reshape(len(args[0]), -1, out.shape[-1]).clone()))
    CodeReads.embed = record
    try:
        yield seen
    finally:
        CodeReads.embed = embed
        hook.remove()


def first_read(model, state, knobs: dict, perturbation) -> torch.Tensor:
    """(batch, m, d): the embeddings of positions 0..m-1 the network reads at its first pass after
    resuming ``state`` (batch doubled when guided)."""
    with recording(model) as seen, torch.no_grad():
        resume(model, state, knobs, torch.Generator().manual_seed(1), perturbation=perturbation)
    return (seen["reads"] or seen["table"])[0]


def assert_prefix_read_clean(model, classes, knobs: dict, cut_fraction: float, sigma: float = 1.0) -> None:
    """Codebook noise after the cut (``after_cut``) leaves the embeddings of the committed prefix
    bit-identical to a resume without noise; the same noise on the whole table (the old I3) does not."""
    cut = sample(model, classes, knobs, torch.Generator().manual_seed(3), cut_fraction=cut_fraction)
    state = cut.state
    noise = Perturbation(code_noise=codebook_noise(model, len(classes), sigma, torch.Generator().manual_seed(9)))
    clean = first_read(model, state, knobs, None)
    fixed = first_read(model, state, knobs, after_cut(noise, state))
    whole_table = first_read(model, state, knobs, noise)
    m = clean.shape[1]
    path = state.committed[:, :m].repeat(len(clean) // len(classes), 1)  # both branches when guided
    assert path.any() and clean.shape == fixed.shape == whole_table.shape
    assert torch.equal(fixed[path], clean[path])
    assert not torch.equal(whole_table[path], clean[path])  # the old I3 read the path through the noise
