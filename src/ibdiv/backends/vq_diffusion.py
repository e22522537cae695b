"""The ``vq_diffusion`` backend: VQ-Diffusion (discrete diffusion) behind the one sampler interface.

Built from the diffusers 0.42.1 components of ``VQDiffusionPipeline`` (``VQModel``,
``Transformer2DModel``, ``VQDiffusionScheduler``, ``LearnedClassifierFreeSamplingEmbeddings`` from
``diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion``) and the transformers CLIP
text encoder (``CLIPTextModel``, ``CLIPTokenizer``), loaded ONE BY ONE from the subfolders of a
local checkpoint folder (vqvae/, transformer/, scheduler/, text_encoder/, tokenizer/,
learned_classifier_free_sampling_embeddings/: the layout ``VQDiffusionPipeline.save_pretrained``
writes). Nothing is downloaded (``local_files_only=True``).

Why not ``VQDiffusionPipeline.from_pretrained``: in diffusers 0.42.1 it cannot load the published
folder nor its own ``save_pretrained`` output: the model index declares the learned embeddings as
``["diffusers", "LearnedClassifierFreeSamplingEmbeddings"]`` and diffusers exports no such top-level
class (it lives only in pipelines.deprecated.vq_diffusion): "ValueError: `diffusers` has no class
`LearnedClassifierFreeSamplingEmbeddings`". Verified on the save_pretrained output by
tests/test_vq_diffusion.py ``test_the_pipelines_own_loader_is_broken`` (a diffusers fix shows up
as a failing test); the published folder was not available here to check.

Conditions are prompts: condition index c is the c-th prompt given at load time, encoded as
``VQDiffusionPipeline._encode_prompt`` encodes it (CLIP ``last_hidden_state``, each token
L2-normalised). The negative branch is the learned embedding table
(``learned_classifier_free_sampling_embeddings.embeddings``, used raw, as the pipeline) or, for a
checkpoint whose table is not learnable, the normalised encoding of the empty prompt (pipeline).

The generative process is the pipeline's loop over ``scheduler.timesteps`` (99, ..., 0) rewritten
here so that it can stop at a cut and resume (passing ``latents=`` restarts at step 0). Per step t:
  1. log p(x0 | x_t) (B, K, N) from the transformer (its log-softmax runs in float64); with
     guidance the batch is [negative, positive], ``uncond + g (cond - uncond)`` then renormalised
     with logsumexp (pipeline_vq_diffusion.py L271-274);
  2. optional token ``temperature`` (not in the pipeline; 1 = the pipeline, and then not applied
     at all): log_softmax(log p / temperature);
  3. the pipeline's ``truncate(log p, truncation_rate)`` (knob ``top_p``; L276, L304-325), then
     ``clamp(-70)`` (L279);
  4. ``scheduler.q_posterior`` (t > 0; at t = 0 the truncated log p(x0) itself), Gumbel noise,
     argmax over the K + 1 classes (K at t = 0): ``VQDiffusionScheduler.step``.

Steps: always the scheduler's ``num_train_timesteps`` (100 for ITHQ); there is no ``steps`` knob.
``set_timesteps(n < num_train_timesteps)`` only truncates the grid to n-1, ..., 0: the first step
then starts from an all-masked grid at a timestep whose trained mask ratio is ~(n-1)/99 and whose
embedding says so, and unmasks ~(1 - c_{n-2}) of the tokens at once. Neither the scheduler nor the
model supports skipping steps.

Deviations from the pipeline (and why):
* Gumbel noise: the scheduler's formula (``-log(-log(u + 1e-30) + 1e-30)``, same (B, K+1, N)
  layout) on uniforms drawn by the given CPU RNG and moved to the device (``backbone.uniform``,
  DESIGN §10); the scheduler draws them on the logits' device. On the CPU the streams are equal.
* Visible codes: the baseline, the knob sweeps and every prefix up to a cut run the published
  sampler unchanged here (``test_same_draws_and_images_as_the_diffusers_pipeline``), whose posterior can
  *replace* a visible code (q_posterior keeps the forward process's uniform-replacement term, and
  the last step, t = 0, redraws every position from log p(x0)); the mask state is absorbing (a
  known token's posterior gives MASK log-prob ~ -69). The replacement probability is ~1e-6 only
  a priori (K b_tt); a posteriori it grows with the network's disbelief in the visible code:
  measured with the scheduler's q_posterior at K = 4096, a known code k whose p(x0 = k) is 0.9 is
  replaced with probability ~1e-3 per step (t = 5..70; 0.1 at t = 99), at p = 0.5 ~5e-3 to 2e-2
  per step, and at t = 0 with probability 1 - p(x0 = k). ``trace["replaced"]`` counts them per step.
* The nested designs' continuations freeze the committed codes (``DecodeState.freeze_committed``,
  set by ``sampling.resume(freeze_committed=True)``): DESIGN §3/§4 need the codes committed at the
  cut shared by every continuation (D_frozen has zero within-path entropy), so a position, once it
  holds a code, keeps it and the draw there is discarded; ``trace["suppressed"]`` counts the
  replacements that freezing kept from happening (``probes.sample_nested`` records the total).
* Guidance runs whenever ``cfg_scale != 1`` (every family here); the pipeline guides only for
  ``guidance_scale > 1`` (L228). Scale 1 is the unguided process in both (no negative branch, no
  logsumexp renormalisation).
* The token temperature (see 2.).

Per-token log-probs: the log-prob of a position's current code under the code distribution of the
draw that set it (its commit, or its last replacement): log_softmax over the K code rows of the step's posterior (the mixture a_{t-1} p(x0) +
b_{t-1}; at t = 0, log p(x0) after truncation and clamp). Whether a position unmasks at a step is
not part of it (as amused: the token's distribution, not the unmasking decision).

Cut/resume: unmasking is random per sample (the expected masked fraction after the step at t is
~c_{t-1} ~ t/99), so samples of one batch reach a committed fraction f at different steps.
``advance`` stops at the first step after which *every* sample has >= f N committed
(``DecodeState.reached``); ``SampleResult.committed_fraction`` is the batch mean, which can exceed
f by more than one step's worth (~N/99 tokens) because the batch waits for its slowest sample: the
per-sample spread grows with the batch (``trace["committed"]`` and ``trace["committed_max"]`` are
the per-step min and max over samples).

Knobs: ``cfg_scale`` (guidance_scale), ``top_p`` (the pipeline's ``truncation_rate``: keep the
most probable codes while the cumulative probability before them is < top_p; 1 keeps all but a
float tail whose cumulative mass already rounds to 1, as the pipeline), ``temperature`` (above).
Operating points (diffusers 0.42.1, pipeline_vq_diffusion.py ``__call__`` L167-169:
``num_inference_steps: int = 100``, ``guidance_scale: float = 5.0``, ``truncation_rate: float = 1.0``):
  neutral  {cfg_scale: 1.0, top_p: 1.0, temperature: 1.0}
  standard {cfg_scale: 5.0, top_p: 1.0, temperature: 1.0}
(the VQ-Diffusion paper's ITHQ samples used truncation 0.86; the pipeline's default is off.)

Interventions (DESIGN §4):
* I2, condition noise, on the conditional branch's encoded prompt (L, D) only, flattened to
  ``condition_width`` = L D; the learned negative embeddings are untouched. The noise is added
  AFTER the pipeline's per-token L2 normalisation: the normalised states are what the transformer
  reads (the learned negatives live on that scale, unnormalised), and noise added before it would
  be largely normalised away (only its direction relative to the CLIP state would survive, with a
  strength depending on each token's CLIP norm). No renormalisation after the noise.
  ``condition_scale`` = the per-element RMS of the normalised states over the prompts' own tokens
  (= 1/sqrt(D): every normalised state has norm 1; the start-of-text position and the padding are
  left out as for aMUSEd, ``diffusers_common.content_rms``, which the normalisation makes a no-op).
* I3, codebook noise, on rows 0..K-1 of ``transformer.latent_image_embedding.emb`` (the mask row K
  and the height/width embeddings untouched), read through a forward hook, per sample; both CFG
  branches read the same perturbed table.

Held-out bits per token: the absorbing-diffusion ELBO bound of the in-house families
(``masking.nelbo_per_sequence``), as a Monte-Carlo estimate over ``SCORE_LEVELS`` stratified mask
sizes per sequence, in network calls sized from the memory budget (``diffusers_common``); ``forward`` gives the transformer the timestep whose
trained mask ratio matches each row's masked fraction.
"""
from __future__ import annotations

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
from ibdiv.families.backbone import DecodeState, device_of, uniform

FAMILY = "vq_diffusion"

KNOBS = {"cfg_scale": 1.0, "top_p": 1.0, "temperature": 1.0}  # the neutral point
SCHEDULE_KNOBS = ()
NEUTRAL = dict(KNOBS)
STANDARD = {**KNOBS, "cfg_scale": 5.0}

EMBEDDINGS = "learned_classifier_free_sampling_embeddings"
SUBFOLDERS = ("vqvae", "transformer", "scheduler", "text_encoder", "tokenizer", EMBEDDINGS)
CONFIG_FILES = {"vqvae": ("config.json", "VQModel"), "transformer": ("config.json", "Transformer2DModel"),
                "scheduler": ("scheduler_config.json", "VQDiffusionScheduler"),
                EMBEDDINGS: ("config.json", "LearnedClassifierFreeSamplingEmbeddings")}
PIPELINES = ("VQDiffusionPipeline",)

# The checkpoint folder (ibdiv.backends.protocol.Backend): what identifies it, what to fill in.
DESCRIBED = "a VQ-Diffusion"
FOLDER_MARKER, FOLDER_CLASSES = MODEL_INDEX, PIPELINES
FOLDER_HINT = "the diffusers folder of microsoft/vq-diffusion-ithq (model_index.json, vqvae/, transformer/, ...)"

LOG_ZERO_CLAMP = -70.0  # pipeline L279
GUMBEL_EPS = 1e-30  # scheduling_vq_diffusion.gumbel_noised


@dataclass
class VQDiffusionConfig:
    vocab_size: int  # K codes (the transformer's num_vector_embeds - 1)
    seq_len: int  # N = height * width
    n_classes: int  # C prompts
    grid: int  # tokens per side
    mask_id: int  # K: the scheduler's mask class
    steps: int  # the scheduler's num_train_timesteps


class VQDiffusionGenerator(PromptedGenerator):
    """VQ-Diffusion's networks plus the encodings of the prompts the class ids stand for."""

    family = FAMILY

    def __init__(self, vqvae, transformer, scheduler, text_encoder, tokenizer,
                 learned_classifier_free_sampling_embeddings, prompts=()):
        super().__init__()
        self.vqvae, self.transformer, self.text_encoder = vqvae, transformer, text_encoder
        self.learned_embeddings = learned_classifier_free_sampling_embeddings
        self.scheduler, self.tokenizer = scheduler, tokenizer
        t = transformer.config
        K = t.num_vector_embeds - 1
        self.config = VQDiffusionConfig(vocab_size=K, seq_len=transformer.num_latent_pixels, n_classes=0,
                                        grid=transformer.height, mask_id=K,
                                        steps=scheduler.config.num_train_timesteps)
        self.set_prompts(list(prompts))

    @property
    def tok_emb(self) -> nn.Embedding:
        """The input code-embedding table (rows 0..K-1 are the codes I3 perturbs; row K = MASK)."""
        return self.transformer.latent_image_embedding.emb

    # --- prompts ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(n, L, D) as ``VQDiffusionPipeline._encode_prompt``: last hidden state, per-token L2 norm.
        One prompt at a time through the encoder (as the pipeline encodes a single prompt): a
        prompt's encoding does not depend on the other prompts (a batched CPU matmul can differ in
        the last bit on some CPUs, measured on an AVX-512 Xeon)."""
        device = device_of(self.text_encoder)
        max_length = self.tokenizer.model_max_length
        encoded = []
        for prompt in prompts:
            # the pipeline pads to max_length without truncating, then slices a longer prompt (losing
            # its end-of-text token)
            ids = self.tokenizer(prompt, padding="max_length", max_length=max_length,
                                 return_tensors="pt").input_ids[:, :max_length]
            hidden = self.text_encoder(ids.to(device))[0]
            encoded.append(hidden / hidden.norm(dim=-1, keepdim=True))
        return torch.cat(encoded)

    def set_prompts(self, prompts: list[str]) -> None:
        """Condition c becomes prompts[c]; the negative is the learned table (or the empty prompt)."""
        empty = self.encode([""])
        encoded = self.encode(list(prompts)) if prompts else empty[:0]
        if self.learned_embeddings.learnable:
            negative = self.learned_embeddings.embeddings.detach()[None].to(empty.device, empty.dtype)
        else:
            negative = empty
        content = (prompt_content(self.tokenizer, list(prompts)).to(encoded.device) if prompts  # as encode tokenizes
                   else torch.zeros(encoded.shape[:2], dtype=torch.bool, device=encoded.device))
        self.register_buffer("prompt_embeds", encoded.detach(), persistent=False)
        self.register_buffer("prompt_content", content, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative.detach(), persistent=False)
        self.prompts = list(prompts)
        self.config.n_classes = len(self.prompts)

    @property
    def condition_width(self) -> int:
        """Width of one flattened condition: L x D."""
        return self.prompt_embeds[0].numel() if len(self.prompt_embeds) else self.negative_prompt_embeds.numel()

    def condition_scale(self) -> torch.Tensor:
        """(L D,) per-coordinate noise scale: the per-element RMS of the normalised prompt states
        over the prompts' own tokens (``content_rms``)."""
        if not self.prompts:
            raise ValueError("no prompts set: give prompts=[...] to load_checkpoint or call set_prompts")
        rms = content_rms(self.prompt_embeds, self.prompt_content)
        return rms.expand(self.condition_width)

    def conditions(self, classes: torch.Tensor, cond_noise: torch.Tensor | None = None) -> torch.Tensor:
        """(n, L, D) encoded prompts of the conditional branch, with ``cond_noise`` (n, L D) added."""
        hidden = self.prompt_embeds[classes]
        if cond_noise is not None:
            hidden = hidden + cond_noise.reshape(hidden.shape).to(hidden.dtype)
        return hidden

    def with_negative(self, hidden: torch.Tensor) -> torch.Tensor:
        """(2n, L, D) of a guided batch: [negative (the learned table), positive], as the pipeline."""
        negative = self.negative_prompt_embeds.to(hidden.dtype).expand(len(hidden), -1, -1)
        return torch.cat([negative, hidden])

    # --- the network --------------------------------------------------------------------------
    def network(self, tokens: torch.Tensor, hidden: torch.Tensor, timestep, code_table=None) -> torch.Tensor:
        """log p(x0) (B, K, N) (the transformer's layout) for token grids (B, N) at one timestep."""
        with reading_codes(self.tok_emb, code_table):
            return self.transformer(tokens, encoder_hidden_states=hidden, timestep=timestep).sample

    def timestep_for(self, masked_fraction: torch.Tensor) -> torch.Tensor:
        """The training timestep whose cumulative mask probability is closest to each fraction."""
        ctt = self.scheduler.log_cumprod_ct.exp()[: self.config.steps].to(masked_fraction.device)
        return (ctt[None, :] - masked_fraction[:, None].float()).abs().argmin(1)

    def forward(self, tokens, classes, *, cond_override=None, code_table=None) -> torch.Tensor:
        """Conditional, unguided log p(x0) as logits (n, N, K), each row at the timestep matching
        its masked fraction (what the held-out bound reads)."""
        hidden = self.conditions(classes)
        steps = self.timestep_for((tokens == self.mask_id).float().mean(1))
        out = torch.empty(tokens.shape[0], tokens.shape[1], self.vocab_size, device=tokens.device)
        for t in steps.unique():
            rows = steps == t
            table = code_table[rows] if code_table is not None else None
            out[rows] = self.network(tokens[rows], hidden[rows], t, table).transpose(1, 2).float()
        return out

    # --- decoding -----------------------------------------------------------------------------
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (n, N) -> images (n, 3, H, W) in [0, 1], as the pipeline decodes (L288-293)."""
        return vq_decode(self.vqvae, tokens)


PRIOR = VQDiffusionGenerator


# ----------------------------------------------------------------------------------------------
# Family contract (ibdiv.families.sampling)
# ----------------------------------------------------------------------------------------------

def truncate(log_p_x_0: torch.Tensor, truncation_rate: float) -> torch.Tensor:
    """``VQDiffusionPipeline.truncate`` (pipeline L304-325), on (B, K, N)."""
    sorted_log_p, indices = torch.sort(log_p_x_0, 1, descending=True)
    keep = sorted_log_p.exp().cumsum(dim=1) < truncation_rate
    keep = torch.cat((torch.ones_like(keep[:, :1]), keep), dim=1)[:, :-1]
    keep = keep.gather(1, indices.argsort(1))
    return log_p_x_0.masked_fill(~keep, -torch.inf)


def gumbel_noise(shape, gen: torch.Generator, device) -> torch.Tensor:
    """The scheduler's Gumbel formula on uniforms from the CPU RNG (DESIGN §10)."""
    u = uniform(shape, gen, device)
    return -torch.log(-torch.log(u + GUMBEL_EPS) + GUMBEL_EPS)


class _Branches(Branches):
    """The network inputs of one batch (conditions = the encoded prompts): [negative, positive] when guided."""

    def log_p_x_0(self, model: VQDiffusionGenerator, tokens: torch.Tensor, timestep) -> torch.Tensor:
        """log p(x0) (B, K, N); guided: ``uncond + g (cond - uncond)`` renormalised with logsumexp (L271-274)."""
        out = model.network(self.batch(tokens), self.conditions, timestep, self.code_table)
        if not self.guided:
            return out
        out = self.guide(out)
        return out - torch.logsumexp(out, dim=1, keepdim=True)


def start(model: VQDiffusionGenerator, classes: torch.Tensor, knobs: dict) -> DecodeState:
    """Every position masked (the pipeline's initial latents)."""
    model.check_classes(classes)
    return DecodeState.fresh(classes, model.config.seq_len, model.mask_id, model.config.steps, {},
                             trace_keys=("committed", "committed_max", "replaced", "suppressed"))


@torch.no_grad()
def advance(model: VQDiffusionGenerator, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Run steps until done or until every sample has >= ``cut_fraction`` N committed.

    Each step keeps the scheduler's draw at every position (the published sampler: a visible code
    may be replaced), or with ``state.freeze_committed`` only at the masked ones.
    Randomness per step: (n, K + 1, N) uniforms ((n, K, N) at the last step, timestep 0).
    """
    branches = _Branches(model, state.classes, knobs["cfg_scale"], perturbation)
    timesteps = torch.arange(model.config.steps - 1, -1, -1)  # the scheduler's timesteps
    K = model.vocab_size
    while not state.finished and not state.reached(cut_fraction):
        t = timesteps[state.step]
        log_p = branches.log_p_x_0(model, state.tokens, t.to(state.tokens.device))
        if knobs["temperature"] != 1.0:
            log_p = torch.log_softmax(log_p / knobs["temperature"], dim=1)
        log_p = truncate(log_p, knobs["top_p"]).clamp(LOG_ZERO_CLAMP)
        posterior = log_p if int(t) == 0 else model.scheduler.q_posterior(log_p, state.tokens, t)
        drawn = (posterior + gumbel_noise(posterior.shape, gen, posterior.device)).argmax(dim=1)
        code_lp = torch.log_softmax(posterior[:, :K], dim=1)
        lp = code_lp.gather(1, drawn.clamp(max=K - 1)[:, None]).squeeze(1)
        apply_step(state, drawn, lp.to(state.logprobs.dtype), K)
    return state


def apply_step(state: DecodeState, drawn: torch.Tensor, lp: torch.Tensor, K: int) -> None:
    """The scheduler's draw ``drawn`` (n, N) (K = MASK) with its code log-probs ``lp``, taken into
    the state: everywhere (the published sampler: ``trace["replaced"]`` counts the visible codes it
    changes) or, frozen, only at masked positions (``trace["suppressed"]`` counts the changes kept out).
    A committed position's log-prob is that of the draw that set its current code."""
    changed = state.committed & (drawn != state.tokens)
    newly = (drawn < K) & ~state.committed
    replaced = torch.zeros_like(changed) if state.freeze_committed else changed
    update = newly | replaced
    state.tokens = torch.where(update, drawn, state.tokens)
    state.logprobs = torch.where(update & (drawn < K), lp, state.logprobs)
    state.logprobs = state.logprobs.masked_fill(state.tokens == K, float("nan"))
    state.committed = state.tokens != K
    state.step += 1
    counts = state.committed.sum(1)
    state.trace["committed"].append(int(counts.min()))
    state.trace["committed_max"].append(int(counts.max()))
    state.trace["replaced"].append(int(replaced.sum()))
    state.trace["suppressed"].append(int(changed.sum()) if state.freeze_committed else 0)


# ----------------------------------------------------------------------------------------------
# Checkpoint folder
# ----------------------------------------------------------------------------------------------

def load_checkpoint(folder, device="cpu", prompts=()) -> VQDiffusionGenerator:
    """The generator of a checkpoint folder, in eval mode on ``device``, conditioned on ``prompts``."""
    from transformers import CLIPTextModel, CLIPTokenizer

    Transformer2DModel, VQDiffusionScheduler, VQModel, LearnedClassifierFreeSamplingEmbeddings = diffusers_classes(
        "models.transformers.transformer_2d:Transformer2DModel",
        "schedulers.scheduling_vq_diffusion:VQDiffusionScheduler", "models.autoencoders.vq_model:VQModel",
        "pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion:LearnedClassifierFreeSamplingEmbeddings")
    folder = check_folder(folder)
    parts = load_components(folder, (("vqvae", VQModel), ("transformer", Transformer2DModel),
                                     ("scheduler", VQDiffusionScheduler), ("text_encoder", CLIPTextModel),
                                     ("tokenizer", CLIPTokenizer), (EMBEDDINGS, LearnedClassifierFreeSamplingEmbeddings)),
                            DESCRIBED)
    t, s = parts["transformer"].config, parts["scheduler"].config
    if t.num_vector_embeds is None:
        raise ValueError(f"{folder}: the transformer does not read discrete latents (num_vector_embeds is unset)")
    if s.num_vec_classes != t.num_vector_embeds:
        raise ValueError(f"{folder}: the scheduler's num_vec_classes {s.num_vec_classes} is not the "
                         f"transformer's num_vector_embeds {t.num_vector_embeds}")
    if t.num_embeds_ada_norm is None or t.num_embeds_ada_norm < s.num_train_timesteps:
        raise ValueError(f"{folder}: the transformer embeds {t.num_embeds_ada_norm} timesteps, the scheduler "
                         f"runs {s.num_train_timesteps}")
    if t.cross_attention_dim != parts["text_encoder"].config.hidden_size:
        raise ValueError(f"{folder}: the transformer reads text states of width {t.cross_attention_dim}, "
                         f"the text encoder gives {parts['text_encoder'].config.hidden_size}")
    if parts["vqvae"].config.num_vq_embeddings < t.num_vector_embeds - 1:
        raise ValueError(f"{folder}: the VQ has {parts['vqvae'].config.num_vq_embeddings} codes, the transformer "
                         f"draws {t.num_vector_embeds - 1}")
    for part in ("vqvae", "transformer", "text_encoder", EMBEDDINGS):
        parts[part] = parts[part].to(device).eval()
    return VQDiffusionGenerator(**parts, prompts=prompts).eval()


# ----------------------------------------------------------------------------------------------
# Tiny checkpoints for tests (randomly initialised, diffusers' test sizes)
# ----------------------------------------------------------------------------------------------

TINY_GRID = 6  # 6 x 6 = 36 tokens
TINY_CODES = 11  # K (diffusers' test VQModel: num_vq_embeddings=11)
TINY_TEXT_WIDTH = 32  # the test transformer's cross_attention_dim


def save_tiny_checkpoint(folder, seed: int = 0, num_train_timesteps: int = 100) -> Path:
    """Tiny randomly initialised VQ-Diffusion components saved with ``VQDiffusionPipeline.save_pretrained``.

    Sizes: diffusers' own test configuration (tests/pipelines/vq_diffusion/test_vq_diffusion.py:
    VQModel [32, 64], latent 3, 11 codes; Transformer2DModel 12 vector embeds, 1 head of 32,
    ada_norm with 100 timestep embeddings), on a 6 x 6 token grid; the offline tiny CLIP tokenizer
    of ``diffusers_common``; learned negative embeddings drawn at random (zeros at construction)
    and normalised per token as the positive ones.
    """
    from diffusers import Transformer2DModel, VQDiffusionPipeline, VQDiffusionScheduler, VQModel
    from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import (
        LearnedClassifierFreeSamplingEmbeddings,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)  # the libraries initialise weights from the global RNG
    vqvae = VQModel(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                    latent_channels=3, num_vq_embeddings=TINY_CODES, vq_embed_dim=3)
    transformer = Transformer2DModel(
        num_attention_heads=1, attention_head_dim=32, num_vector_embeds=TINY_CODES + 1, sample_size=TINY_GRID,
        cross_attention_dim=TINY_TEXT_WIDTH, num_embeds_ada_norm=max(100, num_train_timesteps),
        norm_type="ada_norm", activation_fn="geglu-approximate", attention_bias=True)
    scheduler = VQDiffusionScheduler(num_vec_classes=TINY_CODES + 1, num_train_timesteps=num_train_timesteps)
    tokenizer = tiny_text_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=TINY_TEXT_WIDTH, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=128,
        max_position_embeddings=TINY_TEXT_LENGTH))
    learned = LearnedClassifierFreeSamplingEmbeddings(learnable=True, hidden_size=TINY_TEXT_WIDTH,
                                                      length=TINY_TEXT_LENGTH)
    with torch.no_grad():
        table = torch.randn(TINY_TEXT_LENGTH, TINY_TEXT_WIDTH)
        learned.embeddings.copy_(table / table.norm(dim=-1, keepdim=True))
    pipe = VQDiffusionPipeline(vqvae=vqvae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                               scheduler=scheduler, learned_classifier_free_sampling_embeddings=learned)
    pipe.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------
# The DAG's backend interface (ibdiv.backends.protocol.Backend: the same names in every backend module)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def vq_encode(vq, images: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3, S, S) in [0, 1] -> codes (n, N) in raster order. The VQ works in [-1, 1] (the
    pipeline maps its output with ``image / 2 + 0.5``), so the images go in as ``2 x - 1``."""
    latents = vq.encode((images * 2 - 1).to(device_of(vq), vq.dtype)).latents
    return vq.quantize(latents)[2][2].reshape(len(images), -1)


@torch.no_grad()
def vq_decode(vq, codes: torch.Tensor) -> torch.Tensor:
    """Codes (n, N) -> RGB (n, 3, S, S) in [0, 1], as VQDiffusionPipeline decodes (L288-293)."""
    n, g = codes.shape[0], square_side(codes)
    embeddings = vq.quantize.get_codebook_entry(codes.to(device_of(vq)), shape=(n, g, g, vq.config.vq_embed_dim))
    image = vq.decode(embeddings, force_not_quantize=True).sample
    return (image / 2 + 0.5).clamp(0, 1)


# check_folder, load_conditioned, token_grid, vq_image_size, load_vq and build_tiny: the layout above
# and this module's loader and tiny builder, behind the functions both diffusers backends share
_INTERFACE = PipelineInterface(FAMILY, DESCRIBED, PIPELINES, SUBFOLDERS, CONFIG_FILES, load_checkpoint,
                               save_tiny_checkpoint)
check_folder, load_conditioned, token_grid, vq_image_size, load_vq, build_tiny = _INTERFACE.functions()
