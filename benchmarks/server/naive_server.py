"""The server a tutorial reader would write: a plain ASGI app (Starlette + uvicorn) running the
PyTorch generator eagerly per request, no batching. Same weights, same JSON body as ganserve.

    python -m benchmarks.server.naive_server RUN_DIR PORT
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import torch
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from export.graphs import DiscriminatorGraph, GeneratorGraph
from training.release import read_release

torch.set_num_threads(2)
release = read_release(sys.argv[1])
generator = GeneratorGraph(release.build_generator()).eval()
discriminator = DiscriminatorGraph(release.build_discriminator()).eval()
LATENT = release.spec.latent_dim


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def generate(request_body: dict) -> bytes:
    seed, n = int(request_body.get("seed", 0)), int(request_body.get("n", 1))
    z = np.stack([np.random.default_rng(seed + i).standard_normal(LATENT, dtype=np.float32) for i in range(n)])
    with torch.inference_mode():
        images = generator(torch.from_numpy(z)).numpy()
    if n == 1:
        return png(images[0])
    side = int(np.ceil(np.sqrt(n)))
    h, w, c = images.shape[1:]
    canvas = np.zeros((side * h, side * w, c), np.uint8)
    for i, image in enumerate(images):
        canvas[(i // side) * h:(i // side + 1) * h, (i % side) * w:(i % side + 1) * w] = image
    return png(canvas)


async def generate_endpoint(request):
    body = json.loads(await request.body())
    return Response(generate(body), media_type="image/png")


async def score_endpoint(request):
    form = await request.form()
    data = await form["images"].read()
    image = np.asarray(Image.open(io.BytesIO(data)))
    image = image[None, :, :, None] if image.ndim == 2 else image[None]
    with torch.inference_mode():
        logit = float(discriminator(torch.from_numpy(image.copy()))[0])
    return JSONResponse({"logit": logit})


app = Starlette(routes=[Route("/generate", generate_endpoint, methods=["POST"]),
                        Route("/score", score_endpoint, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
