"""The generator families behind one sampler interface (DESIGN §3): the shared transformer
(`backbone`), the sampler contract and hooks (`sampling`), the mask schedules and absorbing-state bound
shared by the masked families (`masking`), the families themselves (`ar`, `mim`, `diffusion`,
`independent`, `oracle`) and their training (`training`).

May import: `core`, `data`. A family module (ar, mim, diffusion, independent, oracle) imports no
other family module: what two families share lives in `backbone`, `masking` or `sampling`.
"""
