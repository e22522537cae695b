"""Snakemake adapter: encode every image into a compact token cache."""
from ibdiv.data import tokens
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    cache = tokens.encode_dataset(snakemake.input.data, snakemake.input.tokenizer)
    log.info("%d token grids of %d tokens, K=%d", *cache["tokens"].shape, int(cache["codebook_size"]))
    tokens.save_token_cache(snakemake.output[0], cache)
