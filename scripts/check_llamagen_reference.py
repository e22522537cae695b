"""Cross-check ibdiv.backends.llamagen against the reference LlamaGen code on tiny random models.

    python scripts/check_llamagen_reference.py /path/to/LlamaGen   # a local checkout (not shipped)

Builds tiny models of this project's implementation, loads their state dicts into the
reference classes (autoregressive/models/gpt.py, tokenizer/tokenizer_image/vq_model.py) and
compares: teacher-forced logits, greedy generation with CFG (reference generate.py with
top_k = 1), the log-probs of sampled tokens under the reference's temperature / top-k / top-p
filtering, VQ decoding and encoding. Prints each difference and exits non-zero if one is too
large. CPU only, a few seconds. The reference needs huggingface_hub only for a mixin class; a
stand-in is used when it is not installed.
"""
from __future__ import annotations

import sys
import types

import torch

from ibdiv.backends import llamagen
from ibdiv.families import sampling
from ibdiv.families.backbone import sampling_log_probs
from ibdiv.backends.llamagen_vq import VQConfig, VQModel

K, G, C = 64, 4, 10
N = G * G


def import_reference(root: str):
    sys.path.insert(0, root)
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        sys.modules["huggingface_hub"] = types.SimpleNamespace(PyTorchModelHubMixin=object)
    from autoregressive.models import generate, gpt
    from tokenizer.tokenizer_image import vq_model
    return gpt, generate, vq_model


def main(root: str) -> int:
    gpt, generate, vq_model = import_reference(root)
    torch.manual_seed(0)
    mine = llamagen.GPT.build(K, N, C, {"dim": 64, "n_layer": 2, "n_head": 4, "multiple_of": 32})
    torch.nn.init.normal_(mine.output.weight, std=0.4)  # non-uniform logits
    torch.nn.init.normal_(mine.cls_emb.weight, std=1.0)
    mine.eval()
    ref = gpt.Transformer(gpt.ModelArgs(dim=64, n_layer=2, n_head=4, multiple_of=32, vocab_size=K, num_classes=C,
                                        block_size=N, cls_token_num=1, model_type="c2i")).eval()
    ref.load_state_dict(mine.state_dict(), strict=True)
    checks = {}

    tokens, labels = torch.randint(0, K, (8, N)), torch.arange(8) % C
    with torch.no_grad():
        theirs = lambda x, y: ref(x[:, :-1], y, input_pos=torch.arange(N))[0]
        checks["teacher-forced logits"] = (mine(tokens, labels) - theirs(tokens, labels)).abs().max().item()
        for scale in (1.0, 2.0, 4.0):
            greedy = generate.generate(ref, labels, N, cfg_scale=scale, temperature=1.0, top_k=1, top_p=1.0).long()
            ours = sampling.sample(mine, labels, {"top_k": 1, "cfg_scale": scale}, torch.Generator()).tokens
            checks[f"greedy tokens differing, cfg {scale}"] = (greedy != ours).float().mean().item()
        for layer in ref.layers:  # generate() left fixed-size KV caches behind
            layer.attention.kv_cache = None
        knobs = {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "cfg_scale": 2.0}
        result = sampling.sample(mine, labels, knobs, torch.Generator().manual_seed(3))
        cond, uncond = theirs(result.tokens, labels), theirs(result.tokens, torch.full_like(labels, C))
        guided = uncond + (cond - uncond) * 2.0
        probs = generate.logits_to_probs(guided.reshape(-1, K), temperature=0.8, top_k=20, top_p=0.9).view(8, N, K)
        picked = probs.gather(-1, result.tokens[..., None]).squeeze(-1).log()
        checks["sampled-token log-probs"] = (picked - result.logprobs).abs().max().item()
        support = torch.isfinite(sampling_log_probs(guided, 0.8, 20, 0.9)).sum(-1)
        checks["support sizes differing"] = (support != (probs > 0).sum(-1)).float().mean().item()

    cfg = VQConfig(codebook_size=K, codebook_embed_dim=8, ch=128, ch_mult=[1, 2], num_res_blocks=2, z_channels=32)
    torch.manual_seed(1)
    myvq = VQModel(cfg).eval()  # the reference fixes ch = 128 and 2 residual blocks
    refvq = vq_model.VQModel(vq_model.ModelArgs(codebook_size=K, codebook_embed_dim=8, encoder_ch_mult=[1, 2],
                                                decoder_ch_mult=[1, 2], z_channels=32)).eval()
    missing, unexpected = refvq.load_state_dict(myvq.state_dict(), strict=False)
    assert missing == ["quantize.codebook_used"] and not unexpected, (missing, unexpected)
    with torch.no_grad():
        codes = torch.randint(0, K, (3, N))
        theirs_img = refvq.decode_code(codes, [3, cfg.codebook_embed_dim, G, G]).clamp(-1, 1)
        checks["decoded pixels ([-1, 1])"] = (theirs_img - (myvq.decode(codes) * 2 - 1)).abs().max().item()
        images = torch.rand(3, 3, G * cfg.downsample, G * cfg.downsample)
        their_codes = refvq.encode(images * 2 - 1)[2][2].view(3, -1)
        checks["encoded codes differing"] = (their_codes != myvq.encode(images)).float().mean().item()

    tolerance = {"teacher-forced logits": 1e-4, "sampled-token log-probs": 1e-4, "decoded pixels ([-1, 1])": 1e-4}
    failed = False
    for name, value in checks.items():
        ok = value <= tolerance.get(name, 0.0)
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {value:.3g}")
    return int(failed)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
