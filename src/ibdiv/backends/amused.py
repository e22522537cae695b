"""The ``amused`` backend: aMUSEd (masked image modelling, MIM) behind the one sampler interface.

Built from the diffusers 0.42.1 components of ``AmusedPipeline`` (``VQModel``, ``UVit2DModel``,
``AmusedScheduler``) and the transformers CLIP text encoder (``CLIPTextModelWithProjection``,
``CLIPTokenizer``), loaded one by one from a local checkpoint folder in the layout
``AmusedPipeline.save_pretrained`` writes (vqvae/, transformer/, scheduler/, text_encoder/,
tokenizer/). Nothing is downloaded (``local_files_only=True``).

Conditions are prompts: condition index c (the class id 0..C-1 of the rest of ibdiv) is the c-th
prompt given at load time; its text encodings are computed once, as the pipeline computes them
(``prompt_embeds`` = the pooled, projected ``text_embeds``; ``encoder_hidden_states`` = the
penultimate hidden states), together with those of the empty prompt (the pipeline's default
negative prompt, used for classifier-free guidance).

The generative process is the pipeline's loop over ``scheduler.timesteps`` rewritten here, so that
it can stop at a cut and resume (passing ``latents=`` to the pipeline restarts the schedule at step
0: not a resume). Per step, as ``AmusedScheduler.step`` (schedulers/scheduling_amused.py):
  1. logits of every position; with guidance the batch is [negative, positive] and the logits are
     ``uncond + g (cond - uncond)`` (pipeline_amused.py, the denoising loop);
  2. every masked position draws a token from softmax(logits / temperature);
  3. ``mask_len = floor(N cos(pi/2 (i+1)/T))`` (or ``N (1 - (i+1)/T)`` for a linear schedule)
     clamped to [1, masked - 1], computed in float32 as the scheduler does; the ``mask_len`` least
     confident new draws go back to MASK, confidence = log p(draw) + t_i Gumbel with
     ``t_i = linspace(choice_temperature, 0, T)[i]`` (``set_timesteps(T, temperature=(t0, 0))``);
  4. the last step (timestep 0) commits every position.

Deviations from ``AmusedScheduler.step`` (and why):
* Token draws: Gumbel-max on uniforms from the given CPU RNG (``backbone.draw``), not
  ``torch.multinomial``: DESIGN §10 (draws on a CPU RNG, moved to the device; a fixed number
  of uniforms per step, which cut + resume = uninterrupted relies on). Same distribution, other
  random numbers: a seed gives other images than the pipeline.
* Choice noise: Gumbel from the same CPU uniforms (``backbone.gumbel``; the scheduler draws them
  with ``uniform_`` on the generator's device and clamps at 1e-20 instead of float32's tiny).
* Committed tokens have confidence +inf (the scheduler gives them log(float max) ~ 88.7 plus
  Gumbel noise, so a committed token could in principle be re-masked with probability ~e^-44):
  here known tokens are never re-masked, as DESIGN §3 requires.
* The confidence is the log-prob of the draw under the distribution actually sampled from (after
  ``temperature``); the pipeline has no token temperature, and at temperature 1 both are
  log softmax(guided logits).
* Guidance runs whenever ``cfg_scale != 1`` (as every other family here); the pipeline runs it
  only for ``guidance_scale > 1`` and treats scales below 1 as 1. Scale 1 is unguided in both.
* ``choice_temperature`` is the start of the pipeline's ``temperature=(t0, t1)`` pair; the end is
  fixed at the pipeline's default 0.

Knobs: ``steps`` (num_inference_steps), ``cfg_scale`` (guidance_scale), ``choice_temperature``
(the pipeline's ``temperature``: Gumbel noise on the log-confidence, annealed linearly to 0) and
``temperature`` (a token temperature, not in the pipeline; 1 = the pipeline). The masking schedule
is the scheduler's config (``masking_schedule``, "cosine" in the aMUSEd releases), the
micro-conditioning the pipeline's defaults (image size = ``sample_size`` x the VQ's scale factor,
crop (0, 0), aesthetic score 6), set at load time.

Operating points, from the pipeline's defaults (diffusers 0.42.1,
pipelines/deprecated/amused/pipeline_amused.py ``__call__``, lines 90, 91, 107:
``num_inference_steps: int = 12``, ``guidance_scale: float = 10.0``, ``temperature = (2, 0)``):
  neutral  {steps: 12, choice_temperature: 2.0, temperature: 1.0, cfg_scale: 1.0}
  standard {steps: 12, choice_temperature: 2.0, temperature: 1.0, cfg_scale: 10.0}
(choice temperature is part of the unmasking process, not a truncation: kept at its default at
the neutral point, as for the in-house MIM family.)

Interventions (DESIGN §4):
* I2, condition noise, acts on the conditional branch only (the negative / empty-prompt branch is
  "no prompt", as the NULL class of the in-house families). A prompt's condition is two tensors;
  the noise is one flat vector per sample, ``cond_noise`` (n, Dp + L Dh), split into the pooled
  part (first Dp) and the hidden states (the rest, reshaped (L, Dh)). ``condition_noise`` scales
  each part by its own per-element RMS over the configured prompts (``condition_scale``): the two
  tensors live on different scales (a projected pooled vector vs. penultimate-layer activations),
  and one RMS for both would drown one of them. The hidden states' RMS is over the prompts' own
  tokens only (``diffusers_common.content_rms``): not the start-of-text position, whose CLIP
  activations are far larger than the words' and would inflate the noise on every token, nor the
  end-of-text token and padding (the empty prompt's states, repeated). The pooled vector has no
  positions (CLIP projects its end-of-text state): its RMS stays the one over the prompts. All L
  token positions are perturbed, padding included (the network attends to all of them).
* I3, codebook noise, acts on rows 0..K-1 of ``transformer.embed.embeddings`` (K =
  ``codebook_size``); the mask row and the unused rows between are untouched. The network reads the
  perturbed rows through a forward hook on that embedding, per sample (both CFG branches read the
  same perturbed table). An RMSNorm follows the table, so part of the noise's scale is normalised
  away: its direction matters.

Held-out bits per token: the absorbing-diffusion ELBO bound of the in-house MIM family
(``masking.nelbo_per_sequence``), on the conditional, unguided network: a Monte-Carlo estimate over
``SCORE_LEVELS`` stratified mask sizes per sequence (``diffusers_common.heldout_bits_per_token``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ibdiv.backends.diffusers_common import (
    MODEL_INDEX, TINY_TEXT_LENGTH, Branches, PipelineInterface, PromptedGenerator, content_rms, diffusers_classes,
    load_components, prompt_content, reading_codes, square_side, tiny_text_tokenizer,
)
from ibdiv.backends.diffusers_common import heldout_bits_per_token as heldout_bits_per_token  # the family contract's
from ibdiv.backends.diffusers_common import vq_codebook as vq_codebook  # the DAG's backend interface
from ibdiv.families.backbone import DecodeState, device_of, draw, sampling_log_probs
from ibdiv.families.mim import commit_most_confident

FAMILY = "amused"

KNOBS = {"steps": 12, "cfg_scale": 1.0, "choice_temperature": 2.0, "temperature": 1.0}  # the neutral point
SCHEDULE_KNOBS = ("steps",)
NEUTRAL = dict(KNOBS)
STANDARD = {**KNOBS, "cfg_scale": 10.0}

SUBFOLDERS = ("vqvae", "transformer", "scheduler", "text_encoder", "tokenizer")
# The class each subfolder's config must name (what AmusedPipeline.save_pretrained writes).
CONFIG_FILES = {"vqvae": ("config.json", "VQModel"), "transformer": ("config.json", "UVit2DModel"),
                "scheduler": ("scheduler_config.json", "AmusedScheduler")}
PIPELINES = ("AmusedPipeline", "AmusedImg2ImgPipeline", "AmusedInpaintPipeline")  # one folder layout

# The checkpoint folder (ibdiv.backends.protocol.Backend): what identifies it, what to fill in.
DESCRIBED = "an aMUSEd"
FOLDER_MARKER, FOLDER_CLASSES = MODEL_INDEX, PIPELINES
FOLDER_HINT = "the diffusers folder of amused/amused-256 (model_index.json, vqvae/, transformer/, text_encoder/, ...)"

MICRO_CONDITIONING = {"crop_coord": (0, 0), "aesthetic_score": 6}  # the pipeline's defaults


@dataclass
class AmusedConfig:
    """The sizes the rest of ibdiv reads (sampling, probes)."""

    vocab_size: int  # K: codes the generator draws (the transformer's codebook_size)
    seq_len: int  # N = grid * grid tokens
    n_classes: int  # C prompts
    grid: int  # tokens per side (the transformer's sample_size)
    mask_id: int  # the scheduler's mask_token_id (the transformer's last embedding row)


# ----------------------------------------------------------------------------------------------
# The model: components plus the encoded prompts
# ----------------------------------------------------------------------------------------------

class AmusedGenerator(PromptedGenerator):
    """aMUSEd's networks plus the text encodings of the prompts the class ids stand for."""

    family = FAMILY

    def __init__(self, vqvae, transformer, scheduler, text_encoder, tokenizer, prompts=()):
        super().__init__()
        self.vqvae, self.transformer, self.text_encoder = vqvae, transformer, text_encoder
        self.scheduler, self.tokenizer = scheduler, tokenizer
        t = transformer.config
        self.masking_schedule = scheduler.config.masking_schedule
        self.vae_scale_factor = 2 ** (len(vqvae.config.block_out_channels) - 1)  # as AmusedPipeline
        self.config = AmusedConfig(vocab_size=t.codebook_size, seq_len=t.sample_size ** 2, n_classes=0,
                                   grid=t.sample_size, mask_id=scheduler.config.mask_token_id)
        side = t.sample_size * self.vae_scale_factor  # the pipeline's default height = width
        micro = [side, side, *MICRO_CONDITIONING["crop_coord"], MICRO_CONDITIONING["aesthetic_score"]]
        self.register_buffer("micro_conds", torch.tensor([micro], dtype=torch.float32, device=device_of(transformer)),
                             persistent=False)
        self.set_prompts(list(prompts))

    # --- names the sampler and probes read ----------------------------------------------------
    @property
    def tok_emb(self) -> nn.Embedding:
        """The input code-embedding table (rows 0..K-1 are the codes I3 perturbs)."""
        return self.transformer.embed.embeddings

    @property
    def condition_width(self) -> int:
        """Width of one flattened condition: pooled (Dp) + hidden states (L x Dh)."""
        return self.prompt_embeds.shape[1] + self.encoder_hidden_states[0].numel()

    # --- prompts ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (n, Dp), hidden states (n, L, Dh)) exactly as AmusedPipeline encodes a prompt."""
        device = device_of(self.text_encoder)
        ids = self.tokenizer(prompts, return_tensors="pt", padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length).input_ids.to(device)
        out = self.text_encoder(ids, return_dict=True, output_hidden_states=True)
        return out.text_embeds, out.hidden_states[-2]

    def set_prompts(self, prompts: list[str]) -> None:
        """Condition c becomes prompts[c]; the negative is the empty prompt (the pipeline's default).
        One prompt at a time (as the pipeline encodes a single prompt): a prompt's encodings do not
        depend on the other prompts set (a batched CPU matmul can differ in the last bit)."""
        if prompts:
            pooled, hidden = (torch.cat(parts) for parts in zip(*(self.encode([p]) for p in prompts)))
        else:  # no condition yet: empty tables of the right widths
            pooled, hidden = (x[:0] for x in self.encode([""]))
        neg_pooled, neg_hidden = self.encode([""])
        content = (self.content_positions(list(prompts)) if prompts  # where the hidden states' noise scale is read
                   else torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device))
        for name, value in (("prompt_embeds", pooled), ("encoder_hidden_states", hidden), ("prompt_content", content),
                            ("negative_prompt_embeds", neg_pooled),
                            ("negative_encoder_hidden_states", neg_hidden)):
            self.register_buffer(name, value.detach(), persistent=False)
        self.prompts = list(prompts)
        self.config.n_classes = len(self.prompts)

    def content_positions(self, prompts: list[str]) -> torch.Tensor:
        """(n, L) bool: the positions of each prompt's own tokens, tokenized as ``encode`` does."""
        return prompt_content(self.tokenizer, prompts, truncation=True).to(device_of(self.text_encoder))

    def condition_scale(self) -> torch.Tensor:
        """(Dp + L Dh,) per-coordinate noise scale: each text tensor's per-element RMS over the
        prompts (the hidden states' over the prompts' own tokens: ``content_rms``)."""
        if not self.prompts:
            raise ValueError("no prompts set: give prompts=[...] to load_checkpoint or call set_prompts")
        rms = [self.prompt_embeds.detach().float().pow(2).mean().sqrt(),
               content_rms(self.encoder_hidden_states, self.prompt_content)]
        widths = (self.prompt_embeds.shape[1], self.encoder_hidden_states[0].numel())
        return torch.cat([r.expand(w) for r, w in zip(rms, widths)])

    def conditions(self, classes: torch.Tensor, cond_noise: torch.Tensor | None = None):
        """(pooled, hidden) of the conditional branch, with ``cond_noise`` (n, Dp + L Dh) added."""
        pooled, hidden = self.prompt_embeds[classes], self.encoder_hidden_states[classes]
        if cond_noise is not None:
            dp = pooled.shape[1]
            pooled = pooled + cond_noise[:, :dp].to(pooled.dtype)
            hidden = hidden + cond_noise[:, dp:].reshape(hidden.shape).to(hidden.dtype)
        return pooled, hidden

    def with_negative(self, conditions):
        """(pooled, hidden) of a guided batch: [negative (the empty prompt), positive], as the pipeline."""
        pooled, hidden = conditions
        n = len(pooled)
        return (torch.cat([self.negative_prompt_embeds.expand(n, -1), pooled]),
                torch.cat([self.negative_encoder_hidden_states.expand(n, -1, -1), hidden]))

    # --- the network ----------------------------------------------------------------------------
    def network(self, tokens: torch.Tensor, pooled, hidden, code_table=None) -> torch.Tensor:
        """Logits (B, N, K) for token grids (B, N) (MASK where unknown), float32.

        ``code_table`` (a ``CodeReads``): code rows read instead of the table's (per sample).
        """
        g, B = self.config.grid, tokens.shape[0]
        with reading_codes(self.tok_emb, code_table):
            out = self.transformer(tokens.view(B, g, g), micro_conds=self.micro_conds.to(hidden.dtype).expand(B, -1),
                                   pooled_text_emb=pooled, encoder_hidden_states=hidden)
        return out.flatten(2).transpose(1, 2).float()  # (B, K, g, g) -> (B, N, K), raster order as the scheduler

    def forward(self, tokens, classes, *, cond_override=None, code_table=None) -> torch.Tensor:
        """Conditional, unguided logits (n, N, K): what the held-out bound reads."""
        pooled, hidden = self.conditions(classes)
        return self.network(tokens, pooled, hidden, code_table)

    # --- decoding ---------------------------------------------------------------------------------
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (n, N) -> images (n, 3, H, W) in [0, 1], as the pipeline decodes them."""
        return vq_decode(self.vqvae, tokens)


PRIOR = AmusedGenerator


# ----------------------------------------------------------------------------------------------
# Family contract (ibdiv.families.sampling)
# ----------------------------------------------------------------------------------------------

class _Branches(Branches):
    """The network inputs of one batch (conditions = (pooled, hidden)): [negative, positive] when guided."""

    def logits(self, model: AmusedGenerator, tokens: torch.Tensor) -> torch.Tensor:
        """Guided logits (B, N, K) of token grids: ``uncond + g (cond - uncond)``, as the pipeline."""
        return self.guide(model.network(self.batch(tokens), *self.conditions, self.code_table))


def committed_after_step(N: int, steps: int, schedule: str = "cosine") -> list[int]:
    """Tokens committed after each step, computed as AmusedScheduler.step computes mask_len
    (float32 ratio and cosine, floor, clamped to [1, masked - 1]); the last step commits all."""
    counts, masked = [], N
    for i in range(steps - 1):
        ratio = torch.tensor([i + 1]) / steps  # (step_idx + 1) / len(timesteps): float32
        mask_ratio = torch.cos(ratio * math.pi / 2) if schedule == "cosine" else 1 - ratio
        mask_len = int((N * mask_ratio).floor().item())
        masked = max(1, min(masked - 1, mask_len))
        counts.append(N - masked)
    return counts + [N]


def choice_temperatures(choice_temperature: float, steps: int) -> torch.Tensor:
    """set_timesteps(steps, temperature=(choice_temperature, 0)): linear annealing to 0."""
    return torch.linspace(choice_temperature, 0, steps)


def start(model: AmusedGenerator, classes: torch.Tensor, knobs: dict) -> DecodeState:
    """Every position masked (the pipeline's initial latents)."""
    model.check_classes(classes)
    schedule = {key: knobs[key] for key in SCHEDULE_KNOBS}
    return DecodeState.fresh(classes, model.config.seq_len, model.mask_id, knobs["steps"], schedule)


@torch.no_grad()
def advance(model: AmusedGenerator, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Run steps until done or ``cut_fraction`` is reached.

    Randomness per step, in this order: token draws (n, N, K) uniforms, then choice noise (n, N).
    """
    branches = _Branches(model, state.classes, knobs["cfg_scale"], perturbation)
    T, N = state.total_steps, state.tokens.shape[1]
    targets = committed_after_step(N, T, model.masking_schedule)
    temperatures = choice_temperatures(knobs["choice_temperature"], T)
    while not state.finished and not state.reached(cut_fraction):
        t = state.step
        logits = branches.logits(model, state.tokens)
        sampled, lp = draw(sampling_log_probs(logits, knobs["temperature"]), gen)
        commit_most_confident(state, sampled, lp, temperatures[t].item(), targets[t], gen)
    return state


# ----------------------------------------------------------------------------------------------
# Checkpoint folder
# ----------------------------------------------------------------------------------------------

def load_checkpoint(folder, device="cpu", prompts=()) -> AmusedGenerator:
    """The generator of a checkpoint folder, in eval mode on ``device``, conditioned on ``prompts``
    (class id c = prompts[c]; more can be set later with ``set_prompts``)."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    AmusedScheduler, UVit2DModel, VQModel = diffusers_classes(
        "schedulers.scheduling_amused:AmusedScheduler", "models.unets.uvit_2d:UVit2DModel",
        "models.autoencoders.vq_model:VQModel")
    folder = check_folder(folder)
    parts = load_components(folder, (("vqvae", VQModel), ("transformer", UVit2DModel), ("scheduler", AmusedScheduler),
                                     ("text_encoder", CLIPTextModelWithProjection), ("tokenizer", CLIPTokenizer)),
                            DESCRIBED)
    t, s = parts["transformer"].config, parts["scheduler"].config
    if s.mask_token_id != t.vocab_size - 1:
        raise ValueError(f"{folder}: the scheduler's mask_token_id {s.mask_token_id} is not the transformer's "
                         f"last embedding row {t.vocab_size - 1}")
    if t.encoder_hidden_size != parts["text_encoder"].config.hidden_size:
        raise ValueError(f"{folder}: the transformer reads text states of width {t.encoder_hidden_size}, "
                         f"the text encoder gives {parts['text_encoder'].config.hidden_size}")
    for part in ("vqvae", "transformer", "text_encoder"):
        parts[part] = parts[part].to(device).eval()
    return AmusedGenerator(**parts, prompts=prompts).eval()


# ----------------------------------------------------------------------------------------------
# Tiny checkpoints for tests (randomly initialised, the diffusers test sizes)
# ----------------------------------------------------------------------------------------------

TINY_GRID = 8  # 8 x 8 = 64 tokens (even: the tiny U-ViT downsamples by 2)


def save_tiny_checkpoint(folder, seed: int = 0, grid: int = TINY_GRID) -> Path:
    """Build tiny randomly initialised aMUSEd components and save them with
    ``AmusedPipeline.save_pretrained`` (the real layout, read back by the real loaders).

    Sizes: diffusers' own aMUSEd test configuration (tests/pipelines/amused/test_amused.py:
    hidden 8, codebook 8, vocab 32, one layer), with a 2-level VQ (images 2x the token grid).
    ``grid``: the token grid side (even; TINY_GRID by default, 64 to size jobs at a released grid).
    """
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)  # the libraries initialise weights from the global RNG
    codebook, vocab = 8, 32
    transformer = UVit2DModel(
        hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8, micro_cond_encode_dim=2,
        micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=vocab, codebook_size=codebook,
        in_channels=8, block_out_channels=8, num_res_blocks=1, downsample=True, upsample=True,
        block_num_heads=1, num_hidden_layers=1, num_attention_heads=1, attention_dropout=0.0,
        intermediate_size=8, layer_norm_eps=1e-06, ln_elementwise_affine=True, sample_size=grid)
    vqvae = VQModel(
        act_fn="silu", block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
        in_channels=3, latent_channels=8, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=codebook,
        out_channels=3, sample_size=2 * grid, up_block_types=["UpDecoderBlock2D"] * 2,
        mid_block_add_attention=False, lookup_from_codebook=True)
    scheduler = AmusedScheduler(mask_token_id=vocab - 1)
    tokenizer = tiny_text_tokenizer()
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=8,
        layer_norm_eps=1e-05, num_attention_heads=1, num_hidden_layers=2, vocab_size=128,
        projection_dim=8, max_position_embeddings=TINY_TEXT_LENGTH))
    pipe = AmusedPipeline(vqvae=vqvae, tokenizer=tokenizer, text_encoder=text_encoder,
                          transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------
# The DAG's backend interface (ibdiv.backends.protocol.Backend: the same names in every backend module)
# ----------------------------------------------------------------------------------------------

def _working(vq):
    """The VQ as the pipeline runs it: float32 if it is float16 and asks for upcasting."""
    return vq.float() if vq.dtype == torch.float16 and vq.config.force_upcast else vq


@torch.no_grad()
def vq_encode(vq, images: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3, S, S) in [0, 1] -> codes (n, N) in raster order. The VQ sees [0, 1] as is
    (AmusedImg2ImgPipeline: VaeImageProcessor(do_normalize=False), then
    ``vqvae.quantize(vqvae.encode(image).latents)[2][2]``)."""
    vq = _working(vq)
    latents = vq.encode(images.to(device_of(vq), vq.dtype)).latents
    return vq.quantize(latents)[2][2].reshape(len(images), -1)


@torch.no_grad()
def vq_decode(vq, codes: torch.Tensor) -> torch.Tensor:
    """Codes (n, N) -> RGB (n, 3, S, S) in [0, 1], as AmusedPipeline decodes (output clipped)."""
    n, g = codes.shape[0], square_side(codes)
    vq = _working(vq)
    ids = codes.reshape(n, g, g).to(device_of(vq))
    return vq.decode(ids, force_not_quantize=True, shape=(n, g, g, vq.config.latent_channels)).sample.clip(0, 1)


# check_folder, load_conditioned, token_grid, vq_image_size, load_vq and build_tiny: the layout above
# and this module's loader and tiny builder, behind the functions both diffusers backends share
_INTERFACE = PipelineInterface(FAMILY, DESCRIBED, PIPELINES, SUBFOLDERS, CONFIG_FILES, load_checkpoint,
                               save_tiny_checkpoint)
check_folder, load_conditioned, token_grid, vq_image_size, load_vq, build_tiny = _INTERFACE.functions()
