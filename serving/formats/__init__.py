"""The contracts between the stages, each with one owner that writers and readers share:
the model folder's `model.json`, the [-1, 1] <-> uint8 pixel mapping, atomic file writes,
and image bytes (PNG encoding, uploads). Torch-free, so training, export and serving all use
them (the serving install is present wherever ganserve is)."""
