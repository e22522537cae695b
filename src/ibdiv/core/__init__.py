"""The foundation every other layer may use: atomic file IO (`io`), seed derivation (`seeds`),
device choice (`devices`), job logging (`runlog`), config loading and validation (`config`) and
the registry of families, probe kinds, backends and figures (`registry`).

May import: nothing of ibdiv outside `core` (the registry names other modules only as strings and
imports them lazily, so that Snakemake can read it without torch).
"""
