"""What the Snakefile runs while it plans, before any job: the preflight checks of a config
(`preflight`) and the code inputs of each rule (`codegraph`, standard library only).

May import: every layer.
"""
