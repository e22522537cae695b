"""ibdiv: information-bottleneck diagnostics of generative diversity.

One module per concept: data, shapes, tokenizer, classifier, backbone, the families
(ar, mim, diffusion, independent, oracle), sampling, entropy, metrics, ...
"""
