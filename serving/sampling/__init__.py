"""How images are drawn, in pure NumPy: the seed contract (each seed's own latent stream),
candidates for discriminator-guided sampling, interpolation paths, and the generation modes
that combine them over any `generate(feeds)` / `score(feeds)` pair (`modes.py`)."""
