"""The llamagen backend (issue 13, DESIGN §12): every sampler hook on tiny random models, the
checkpoint folder (save, reload, loader errors) and, at the published sizes (built on the `meta`
device: no memory, no weights), the key names and shapes the reference repository defines.

Reference facts below come from FoundationVision/LlamaGen: autoregressive/models/gpt.py (GPT),
autoregressive/models/generate.py (sampling), autoregressive/sample/sample_c2i.py (c2i defaults),
tokenizer/tokenizer_image/vq_model.py (VQ).
"""
import argparse
import json
import math

import pytest
import torch

from ibdiv.measure import entropy, probes
from ibdiv.backends import llamagen
from ibdiv.core import registry
from ibdiv.families.backbone import CodeReads, KVCache, sampling_log_probs
from ibdiv.backends.llamagen import GPT, GPTConfig, gpt_config, load_checkpoint, load_vq, save_checkpoint
from ibdiv.backends.llamagen_vq import VQConfig, VQModel
from ibdiv.families.sampling import Perturbation, codebook_noise, condition_noise, resume, sample

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

torch.set_num_threads(1)

K, G, C = 64, 4, 10  # codes, grid side, classes
N = G * G
TINY_GPT = {"dim": 32, "n_layer": 2, "n_head": 2, "multiple_of": 32}
TINY_VQ = VQConfig(codebook_size=K, codebook_embed_dim=8, ch=32, ch_mult=[1, 2], num_res_blocks=1, z_channels=32)


def tiny_gpt(seed=0) -> GPT:
    """Random weights with a sharper output head than the 0.02 init, so logits are far from
    uniform and the knobs have something to act on."""
    torch.manual_seed(seed)
    model = GPT.build(K, N, C, TINY_GPT)
    torch.nn.init.normal_(model.output.weight, std=0.4)
    torch.nn.init.normal_(model.cls_embedding.embedding_table.weight, std=1.0)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_gpt()


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(1)
    return VQModel(TINY_VQ).eval()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def classes(n=64):
    return torch.arange(n) % C


def position_entropy(tokens: torch.Tensor) -> float:
    """Mean over positions of the plug-in entropy (bits) across samples."""
    return float(entropy.entropy_from_counts(entropy.counts_per_position(tokens.cpu().numpy(), K), "plugin").mean())


# --- published sizes (meta device) ---------------------------------------------------------------

def reference_gpt_keys(n_layer: int) -> set[str]:
    """gpt.py Transformer: cls_embedding (LabelEmbedder.embedding_table), tok_embeddings, layers.{i}
    (TransformerBlock: attention.wqkv/wo, feed_forward.w1/w2/w3, attention_norm, ffn_norm), norm,
    output; all Linear layers bias=False; freqs_cis is a plain attribute (no state-dict entry)."""
    per_layer = ["attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3",
                 "attention_norm", "ffn_norm"]
    keys = {"cls_embedding.embedding_table.weight", "tok_embeddings.weight", "norm.weight", "output.weight"}
    return keys | {f"layers.{i}.{name}.weight" for i in range(n_layer) for name in per_layer}


def test_gpt_b_has_the_published_key_names_and_shapes():
    with torch.device("meta"):
        model = GPT(gpt_config({"preset": "GPT-B"}))
    state = model.state_dict()
    assert set(state) == reference_gpt_keys(12)  # GPT_B: n_layer=12, n_head=12, dim=768
    shapes = {
        "cls_embedding.embedding_table.weight": (1001, 768),  # num_classes 1000 + 1 null row (class_dropout_prob > 0)
        "tok_embeddings.weight": (16384, 768),  # vocab_size 16384 (sample_c2i.py --codebook-size)
        "layers.0.attention.wqkv.weight": (3 * 768, 768),  # (n_head + 2 n_kv_head) head_dim, n_kv_head = n_head
        "layers.0.attention.wo.weight": (768, 768),
        "layers.0.feed_forward.w1.weight": (2048, 768),  # find_multiple(int(2 * 4 * 768 / 3), 256) = 2048
        "layers.0.feed_forward.w3.weight": (2048, 768),
        "layers.11.feed_forward.w2.weight": (768, 2048),
        "layers.11.ffn_norm.weight": (768,),
        "norm.weight": (768,),
        "output.weight": (16384, 768),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert model.rope.shape == (1 + 256, 768 // 12 // 2, 2)  # cls_token_num + 16 x 16 positions


@pytest.mark.parametrize("preset, millions", [("GPT-B", 111), ("GPT-L", 343), ("GPT-XL", 775), ("GPT-XXL", 1400),
                                             ("GPT-XXXL", 3900), ("GPT-3B", 3100)])
def test_published_gpt_parameter_counts(preset, millions):
    """The counts in gpt.py's comments (GPT_B # 111M ... GPT_XXXL # 3.9B, GPT_3B # 3.1B)."""
    with torch.device("meta"):
        model = GPT(gpt_config({"preset": preset}))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(millions, rel=0.01)


def reference_vq_keys(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2) -> set[str]:
    """vq_model.py VQModel, written out from its constructor loops: Encoder levels with
    num_res_blocks ResnetBlocks (nin_shortcut where the width changes), AttnBlocks at the last
    level only, Downsample except at the last level; mid = [res, attn, res]; Decoder levels in
    reverse with num_res_blocks + 1 blocks, attention at the lowest resolution, Upsample except at
    level 0. Conv2d and GroupNorm have weight and bias. (Plus quantize.codebook_used, a training
    buffer the loader ignores.)"""
    res = lambda p, nin: [f"{p}.{m}" for m in ("norm1", "conv1", "norm2", "conv2")] + ([f"{p}.nin_shortcut"] if nin else [])
    attn = lambda p: [f"{p}.{m}" for m in ("norm", "q", "k", "v", "proj_out")]
    modules = ["quant_conv", "post_quant_conv", "encoder.conv_in", "encoder.norm_out", "encoder.conv_out",
               "decoder.conv_in", "decoder.norm_out", "decoder.conv_out"]
    for net in ("encoder", "decoder"):
        modules += res(f"{net}.mid.0", False) + attn(f"{net}.mid.1") + res(f"{net}.mid.2", False)
    last, c = len(ch_mult) - 1, ch
    for i, m in enumerate(ch_mult):
        for j in range(num_res_blocks):
            modules += res(f"encoder.conv_blocks.{i}.res.{j}", c != ch * m)
            c = ch * m
            modules += attn(f"encoder.conv_blocks.{i}.attn.{j}") if i == last else []
        modules += [f"encoder.conv_blocks.{i}.downsample.conv"] if i != last else []
    c = ch * ch_mult[-1]
    for index, i in enumerate(reversed(range(len(ch_mult)))):
        for j in range(num_res_blocks + 1):
            modules += res(f"decoder.conv_blocks.{index}.res.{j}", c != ch * ch_mult[i])
            c = ch * ch_mult[i]
            modules += attn(f"decoder.conv_blocks.{index}.attn.{j}") if i == last else []
        modules += [f"decoder.conv_blocks.{index}.upsample.conv"] if i != 0 else []
    return {f"{m}.{p}" for m in modules for p in ("weight", "bias")} | {"quantize.embedding.weight"}


def test_vq16_has_the_published_key_names_and_shapes():
    with torch.device("meta"):
        vq = VQModel(llamagen.vq_config({"preset": "VQ-16"}))
    state = vq.state_dict()
    assert set(state) == reference_vq_keys()
    shapes = {
        "quantize.embedding.weight": (16384, 8),  # codebook_size 16384, codebook_embed_dim 8
        "quant_conv.weight": (8, 256, 1, 1),  # z_channels 256 -> 8
        "post_quant_conv.weight": (256, 8, 1, 1),
        "encoder.conv_in.weight": (128, 3, 3, 3),  # ch 128
        "encoder.conv_blocks.4.res.0.nin_shortcut.weight": (512, 256, 1, 1),  # ch_mult (1, 1, 2, 2, 4)
        "decoder.conv_in.weight": (512, 256, 3, 3),
        "decoder.conv_blocks.0.attn.2.q.weight": (512, 512, 1, 1),  # 3 blocks per decoder level
        "decoder.conv_out.weight": (3, 128, 3, 3),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(p.numel() for p in vq.parameters()) / 1e6 == pytest.approx(72, rel=0.01)  # "~72M" (paper, Table)
    assert vq.config.downsample == 16


# --- the network -----------------------------------------------------------------------------

def test_rope_turns_half_the_pairs_with_the_row_and_half_with_the_column():
    table = llamagen.rope_2d(grid=4, head_dim=8, base=10000.0)  # (1 + 16, 4 pairs, [cos, sin])
    assert torch.equal(table[0], torch.zeros(4, 2))  # the class token: query and key zeroed, as the reference
    angle = lambda p: torch.atan2(table[1 + p, :, 1], table[1 + p, :, 0])
    row1_col2 = angle(1 * 4 + 2)  # frequencies base^(-0/4), base^(-2/4) = 1, 0.01
    torch.testing.assert_close(row1_col2, torch.tensor([1.0, 0.01, 2.0, 0.02]))


def test_kv_cache_logits_equal_full_recomputation_and_no_future_is_seen(model):
    tokens, labels = torch.randint(0, K, (5, N), generator=gen()), classes(5)
    with torch.no_grad():
        full = model(tokens, labels)
        cache = KVCache()
        stepwise = [model.forward_step(tokens[:, :0], labels, cache)]
        stepwise += [model.forward_step(tokens[:, i:i + 1], labels, cache) for i in range(N - 1)]
        torch.testing.assert_close(torch.stack(stepwise, 1), full, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.forward_step(tokens[:, :9], labels, KVCache()), full[:, 9], atol=1e-5, rtol=1e-5)
        changed = tokens.clone()
        changed[:, 10:] = (changed[:, 10:] + 1) % K
        after = model(changed, labels)
    torch.testing.assert_close(full[:, :11], after[:, :11])
    assert not torch.allclose(full[:, 11:], after[:, 11:])


def test_tiny_model_samples_a_batch_in_well_under_a_second(model):
    import time

    start = time.perf_counter()
    result = sample(model, classes(64), {"cfg_scale": 2.0}, gen())
    assert time.perf_counter() - start < 1.0  # about 0.03 s on one core
    assert result.state is None and result.committed.all() and ((result.tokens >= 0) & (result.tokens < K)).all()
    assert torch.isfinite(result.logprobs).all() and (result.logprobs <= 0).all()
    assert model.family == "llamagen" and registry.family("llamagen").model == "checkpoint"


# --- stop and resume ---------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 0.3, 1 / 2])
def test_the_cut_is_the_raster_prefix_of_the_fraction(model, fraction):
    """(Cut + resume = uninterrupted, for every backend: tests/test_backend_interface.py.)"""
    knobs = {"cfg_scale": 2.0, "top_k": 20}
    whole = sample(model, classes(), knobs, gen(7))
    g = gen(7)
    cut = sample(model, classes(), knobs, g, cut_fraction=fraction)
    assert fraction <= cut.committed_fraction < fraction + 1 / N  # within one token step
    assert cut.committed_fraction == math.ceil(fraction * N) / N and cut.process_fraction == cut.committed_fraction
    assert (cut.tokens[~cut.committed] == -1).all() and cut.committed[:, :math.ceil(fraction * N)].all()
    rest = resume(model, cut.state, knobs, g)  # with top-k on the 64-sample batch of this file
    assert torch.equal(rest.tokens, whole.tokens)
    torch.testing.assert_close(rest.logprobs, whole.logprobs)


def test_nested_design_expands_the_state(model):
    out = probes.sample_nested(model, 3, paths=4, continuations=5, cut_fraction=0.25, knobs={}, seed=0,
                               before=("condition", 0.5), after=("codebook", 0.5), noise_seed=1)
    assert out["tokens"].shape == (3, 4, 5, N) and out["committed_fraction"] == 0.25
    prefix = out["tokens"][..., :4]
    assert (prefix == prefix[:, :, :1]).all()  # every continuation of a path shares its prefix
    assert len({tuple(t) for t in out["tokens"][0, 0]}) > 1  # and the continuations differ


# --- guidance and knobs --------------------------------------------------------------------------

def test_logprobs_are_those_of_the_guided_truncated_distribution(model):
    """generate.py: logits = uncond + (cond - uncond) * scale, the null class = num_classes;
    then temperature, top-k, top-p."""
    labels, knobs = classes(32), {"temperature": 0.7, "top_k": 12, "top_p": 0.8, "cfg_scale": 2.0}
    result = sample(model, labels, knobs, gen())
    with torch.no_grad():
        cond, uncond = model(result.tokens, labels), model(result.tokens, torch.full_like(labels, C))
    expected = sampling_log_probs(uncond + 2.0 * (cond - uncond), 0.7, 12, 0.8).gather(-1, result.tokens[..., None])
    torch.testing.assert_close(result.logprobs, expected.squeeze(-1), atol=1e-4, rtol=1e-4)


def test_kv_cache_off_gives_the_same_tokens(model):
    knobs = {"cfg_scale": 1.5, "top_p": 0.9}
    cached = sample(model, classes(), {**knobs, "kv_cache": True}, gen())
    recomputed = sample(model, classes(), {**knobs, "kv_cache": False}, gen())
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.logprobs, recomputed.logprobs)


def test_higher_temperature_raises_and_smaller_top_k_lowers_entropy(model):
    one = torch.full((300,), 3)
    entropy = lambda knobs: position_entropy(sample(model, one, knobs, gen()).tokens)
    cold, neutral, hot = entropy({"temperature": 0.5}), entropy({}), entropy({"temperature": 2.0})
    assert cold + 0.2 < neutral < hot - 0.2
    top8, top2 = entropy({"top_k": 8}), entropy({"top_k": 2})
    assert top2 + 0.2 < top8 < neutral - 0.2  # per position more than 2 codes remain: prefixes differ
    assert entropy({"top_k": 1}) == 0.0 and entropy({"temperature": 1e-4}) == 0.0


# --- perturbations -------------------------------------------------------------------------------

def test_noise_hooks_map_to_llamagen_tables(model):
    """I2: the class row of the conditional branch only (the null row stays clean); I3: the rows of
    tok_embeddings both branches read. Checked through the recorded log-probs under CFG."""
    labels, scale = classes(16), 2.0
    cond_noise = condition_noise(model, 16, 1.0, gen(3))
    code_noise = codebook_noise(model, 16, 1.0, gen(4))
    result = sample(model, labels, {"cfg_scale": scale}, gen(), perturbation=Perturbation(cond_noise, code_noise))
    table = CodeReads(model.tok_embeddings.weight + code_noise)
    with torch.no_grad():
        cond = model(result.tokens, labels, cond_override=model.cls_emb(labels) + cond_noise, code_table=table)
        uncond = model(result.tokens, torch.full_like(labels, C), code_table=table)  # clean null row
    expected = sampling_log_probs(uncond + scale * (cond - uncond)).gather(-1, result.tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(result.logprobs, expected, atol=1e-4, rtol=1e-4)
    rms = lambda t: t.pow(2).mean().sqrt().item()
    assert rms(code_noise) == pytest.approx(rms(model.tok_embeddings.weight), rel=0.05)  # all K rows are codes
    assert rms(cond_noise) == pytest.approx(rms(model.cls_embedding.embedding_table.weight[:C]), rel=0.2)


def test_perturbation_after_the_cut_leaves_the_path(model):
    noise = Perturbation(code_noise=codebook_noise(model, 64, 1.0, gen(9)))
    g1, g2 = gen(1), gen(1)
    plain_cut, noisy_cut = sample(model, classes(), {}, g1, cut_fraction=0.5), sample(model, classes(), {}, g2, cut_fraction=0.5)
    assert torch.equal(plain_cut.tokens, noisy_cut.tokens)
    plain, noisy = resume(model, plain_cut.state, {}, g1), resume(model, noisy_cut.state, {}, g2, perturbation=noise)
    assert torch.equal(plain.tokens[:, :N // 2], noisy.tokens[:, :N // 2]) and not torch.equal(plain.tokens, noisy.tokens)


def test_heldout_bits_are_exact_and_finite(model):
    tokens = sample(model, classes(), {}, gen()).tokens
    bits = llamagen.heldout_bits_per_token(model, tokens, classes())
    assert 0 < bits < math.log2(K)
    random_bits = llamagen.heldout_bits_per_token(model, torch.randint(0, K, (64, N), generator=gen()), classes())
    assert bits < random_bits  # its own samples are likelier than random grids


# --- the VQ tokenizer ------------------------------------------------------------------------------

def test_vq_decodes_token_grids_to_images_and_encodes_them_back(vq):
    codes = torch.randint(0, K, (6, N), generator=gen())
    images = vq.decode(codes)
    side = G * TINY_VQ.downsample
    assert images.shape == (6, 3, side, side) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
    again = vq.encode(images)
    assert again.shape == (6, N) and again.dtype == torch.long and ((again >= 0) & (again < K)).all()


def test_vq_codebook_lookup_is_l2_normalised(vq):
    z = vq.quantize.embedding.weight[:5] * torch.tensor([[0.1], [3.0], [1.0], [7.0], [0.5]])
    assert torch.equal(vq.quantize.nearest(z), torch.arange(5))  # the scale of a query does not matter


# --- the checkpoint folder -------------------------------------------------------------------------

def test_save_and_reload_give_identical_samples_and_images(model, vq, tmp_path):
    save_checkpoint(tmp_path / "ckpt", model, vq)
    payload = torch.load(tmp_path / "ckpt" / "gpt.pt", weights_only=True)
    assert set(payload) == {"model"}  # the release format
    sizes = json.loads((tmp_path / "ckpt" / "llamagen.json").read_text())
    assert sizes["gpt"]["file"] == "gpt.pt" and sizes["gpt"]["dim"] == 32 and sizes["vq"]["ch_mult"] == [1, 2]
    loaded, loaded_vq = load_checkpoint(tmp_path / "ckpt"), load_vq(tmp_path / "ckpt")
    assert not loaded.training
    knobs = {"cfg_scale": 2.0, "top_p": 0.9}
    first, second = sample(model, classes(), knobs, gen(5)), sample(loaded, classes(), knobs, gen(5))
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.logprobs, second.logprobs)
    assert torch.equal(vq.decode(first.tokens[:4]), loaded_vq.decode(first.tokens[:4]))
    via_probes = probes.load_sampler("llamagen", tmp_path / "ckpt")  # how a DAG job loads a checkpoint family
    assert isinstance(via_probes, GPT) and torch.equal(via_probes.output.weight, model.output.weight)


class Opaque:
    """A class weights_only loading must refuse to rebuild."""


def rewrite(folder, part_file, edit):
    path = folder / part_file
    payload = torch.load(path, weights_only=True)
    edit(payload["model"])
    torch.save(payload, path)


@pytest.fixture
def saved(model, vq, tmp_path):
    return save_checkpoint(tmp_path / "ckpt", model, vq)


def test_loader_rejects_a_renamed_key_naming_it(saved):
    rewrite(saved, "gpt.pt", lambda sd: sd.__setitem__("layers.1.attention.wqkv.weights",
                                                       sd.pop("layers.1.attention.wqkv.weight")))
    with pytest.raises(ValueError, match=r"gpt\.pt.*missing keys \['layers\.1\.attention\.wqkv\.weight'\], "
                                         r"unexpected keys \['layers\.1\.attention\.wqkv\.weights'\]"):
        load_checkpoint(saved)


def test_loader_rejects_a_wrong_shape_naming_key_expected_and_found(saved):
    rewrite(saved, "vq.pt", lambda sd: sd.__setitem__("quantize.embedding.weight", torch.zeros(K, 4)))
    with pytest.raises(ValueError, match=r"vq\.pt: shape mismatch: quantize\.embedding\.weight: expected \(64, 8\), found \(64, 4\)"):
        load_vq(saved)


def test_loader_accepts_only_allow_listed_extra_entries(saved, model):
    rewrite(saved, "gpt.pt", lambda sd: sd.__setitem__("freqs_cis", torch.zeros(N + 1, 8, 2)))
    rewrite(saved, "vq.pt", lambda sd: sd.__setitem__("quantize.codebook_used", torch.zeros(65536)))
    assert torch.equal(load_checkpoint(saved).output.weight, model.output.weight)
    load_vq(saved)
    rewrite(saved, "gpt.pt", lambda sd: sd.__setitem__("cls_embedding.uncond_embedding", torch.zeros(3)))
    with pytest.raises(ValueError, match=r"unexpected keys \['cls_embedding\.uncond_embedding'\]"):
        load_checkpoint(saved)


def test_loader_reads_training_and_fsdp_payloads_and_rejects_other_ones(saved):
    sd = torch.load(saved / "gpt.pt", weights_only=True)["model"]
    # train_c2i.py's checkpoint: the run's argparse.Namespace rides along
    torch.save({"model": sd, "optimizer": {}, "steps": 10, "args": argparse.Namespace(lr=1e-4, gpt_model="GPT-B")},
               saved / "gpt.pt")
    load_checkpoint(saved)
    torch.save(sd, saved / "gpt.pt")  # FSDP releases: the bare state dict
    load_checkpoint(saved)
    torch.save({"model": sd, "extra": Opaque()}, saved / "gpt.pt")
    with pytest.raises(ValueError, match=r"gpt\.pt: cannot be read with torch.load\(weights_only=True\)"):
        load_checkpoint(saved)
    torch.save({"state": 1}, saved / "gpt.pt")
    with pytest.raises(ValueError, match=r"gpt\.pt: expected \{'model': state_dict\}"):
        load_checkpoint(saved)


def test_loader_errors_name_the_missing_file_or_sizes(saved):
    """(A missing folder or sizes file, another backend's folder: tests/test_backend_interface.py.)"""
    sizes = json.loads((saved / "llamagen.json").read_text())
    sizes["gpt"]["file"] = "c2i_B_256.pt"
    (saved / "llamagen.json").write_text(json.dumps(sizes))
    with pytest.raises(FileNotFoundError, match=r"c2i_B_256\.pt \(named by .*llamagen\.json for 'gpt'\) does not exist"):
        load_checkpoint(saved)
    sizes["gpt"] = {"file": "gpt.pt", "preset": "GPT-Q"}
    (saved / "llamagen.json").write_text(json.dumps(sizes))
    with pytest.raises(ValueError, match=r"llamagen\.json: unknown preset 'GPT-Q'"):
        load_checkpoint(saved)
    sizes["gpt"] = {"file": "gpt.pt", "preset": "GPT-B", "dim": 32, "n_layer": 2, "n_head": 2, "multiple_of": 32,
                    "vocab_size": K, "num_classes": C, "block_size": N}
    (saved / "llamagen.json").write_text(json.dumps(sizes))
    load_checkpoint(saved)  # explicit sizes override the preset


def test_a_published_size_folder_describes_gpt_b_with_vq16():
    """What a release folder's llamagen.json says (file names as released)."""
    entry = {"file": "c2i_B_256.pt", "preset": "GPT-B"}
    assert gpt_config(entry) == GPTConfig(dim=768, n_layer=12, n_head=12)
    assert gpt_config(entry).grid == 16 and gpt_config(entry).ffn_hidden == 2048
    assert llamagen.vq_config({"file": "vq_ds16_c2i.pt", "preset": "VQ-16"}) == VQConfig()
