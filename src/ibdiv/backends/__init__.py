"""Pretrained generators behind the family interface (DESIGN §12): `llamagen` (with its VQ,
`llamagen_vq`), `amused` and `vq_diffusion` (sharing the diffusers helpers of `diffusers_common`),
checkpoint folders and their records (`checkpoints`), and the real images of configured
conditions (`pretrained`).

May import: `core`, `data`, `families`. A backend imports no other backend.
"""
