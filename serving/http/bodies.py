"""Generated images as HTTP response bodies: PNG (one image or a tiled grid), a zip of PNGs,
JSON with base64 PNGs, or .npy of uint8. Pure functions."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np

from ..formats.images import encode_png, seed_file_name, tile
from ..formats.png import encode_pngs

MEDIA_TYPES = {"png": "image/png", "zip": "application/zip", "json": "application/json",
               "npy": "application/octet-stream", "gif": "image/gif"}


def needs_pngs(fmt: str, count: int) -> bool:
    """Whether the body is made of one PNG per image (else a grid or raw arrays)."""
    return fmt in ("zip", "json") or (fmt == "png" and count == 1)


def images_body(images: np.ndarray, seeds: list[int], labels: list[int] | None, fmt: str,
                model: dict, extra: dict | None = None, pngs: list[bytes] | None = None) -> bytes:
    """The response body. `pngs`: each image's PNG, already encoded (by the batcher). Images of
    given latents have no seeds (`seeds` empty): zip names them latentNNNNNNNN.png by position."""
    if needs_pngs(fmt, len(images)) and pngs is None:
        pngs = encode_pngs(images)
    if fmt == "png":
        return pngs[0] if len(images) == 1 else encode_png(tile(images))
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, images, allow_pickle=False)
        return buffer.getvalue()
    if fmt == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            names = [seed_file_name(seed) for seed in seeds] or [f"latent{i:08d}.png" for i in range(len(pngs))]
            for name, png in zip(names, pngs):
                # a fixed timestamp keeps the archive's bytes a function of the images alone
                archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), png)
        return buffer.getvalue()
    return json.dumps({
        "model": model, "seeds": seeds, "labels": labels, **(extra or {}),
        "images": [base64.b64encode(png).decode("ascii") for png in pngs],
    }).encode()


def projection_body(projected, names: list[str], fmt: str, model: dict) -> bytes:
    """/project's body: json (per image: latent, distances, p_real, the reconstruction as a base64
    PNG), npy (the latents, float32 [N, latent_dim]) or png (the reconstruction, or a grid)."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, projected.latents.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()
    if fmt == "png":
        images = projected.images
        return encode_png(images[0] if len(images) == 1 else tile(images))
    results = [{**row, "latent": latent.tolist(), "reconstruction": base64.b64encode(png).decode("ascii")}
               for row, latent, png in zip(projected.figures(names), projected.latents,
                                           encode_pngs(projected.images))]
    return json.dumps({"model": model, "search": projected.stats, "results": results}).encode()
