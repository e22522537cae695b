"""ibdiv: information-bottleneck diagnostics of generative diversity.

Packages by layer, lowest first; a module imports only from its own layer or the layers below
(tests/test_layers.py enforces it, docs/architecture.md draws it):

    core      io, seeds, devices, runlog, config, registry: what every layer uses
    data      datasets, shapes, the VQ tokenizer, token files, the evaluator classifier
    families  the shared backbone and sampler interface, the in-house families, training
    backends  pretrained generators (llamagen, amused, vq_diffusion) behind the family interface
    measure   entropy estimators, probes (the interventions), diagnostics, metrics, coarse alphabets
    verdict   strategy classification and the label calibration suite
    report    tables, findings and figures
    pipeline  what the Snakefile runs before any job: preflight checks, code inputs
"""
