"""Images and tokens: datasets (`datasets`, the procedural `shapes`), the in-house VQ tokenizer
(`tokenizer`), a pretrained backend's VQ behind the same interface (`backend_tokenizer`, a pointer
read by name), token files (`tokens`) and the evaluator classifier (`classifier`).

May import: `core`.
"""
