#!/usr/bin/env python3
"""Triton Inference Server (PyTriton's tritonserver, its dynamic batcher) running a model
folder's generator.onnx under ONNX Runtime on the GPU: the GPU counterpart of
../../../shared/peers/triton/server.py, whose instances use the CPU provider. The same
request contract: input `seed` INT64 [-1, 1], output `png` BYTES [-1, 1]; per row
z = Generator(PCG64(seed)).standard_normal, labels = seed % classes, PNG via Pillow.

    python triton_cuda_server.py MODEL_DIR [--http-port 8700] [--instances 4] [--max-batch 64]

Run it with the Triton venv plus onnxruntime-gpu; the provider each instance got is logged,
and with --require-cuda the server refuses to start on the CPU provider.
"""
import argparse
import io
import json
import logging
import os
import signal
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

log = logging.getLogger("triton-cuda")


def make_instance(onnx_path: Path, num_classes: int, require_cuda: bool):
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # onnxruntime-gpu[cuda,cudnn]'s pip CUDA libraries
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    provider = session.get_providers()[0]
    log.info("instance provider: %s", provider)
    if require_cuda and provider != "CUDAExecutionProvider":
        raise SystemExit(f"CUDA was required; ONNX Runtime gave {provider}")
    latent_dim = int(session.get_inputs()[0].shape[1])

    @batch
    def infer(seed: np.ndarray):
        seeds = seed.reshape(-1)
        z = np.stack([np.random.Generator(np.random.PCG64(int(s))).standard_normal(latent_dim, dtype=np.float32)
                      for s in seeds])
        feeds = {"z": z}
        if num_classes:
            feeds["labels"] = (seeds.astype(np.uint64) % np.uint64(num_classes)).astype(np.int64)
        images = session.run(None, feeds)[0]
        pngs = np.empty((len(images), 1), dtype=object)
        for row, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
            pngs[row, 0] = buffer.getvalue()
        return {"png": pngs}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--http-port", type=int, default=8700)
    parser.add_argument("--grpc-port", type=int, default=8701)
    parser.add_argument("--metrics-port", type=int, default=8702)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--require-cuda", action="store_true")
    args = parser.parse_args()
    # as the CPU peer does: Triton's Python stub must load this interpreter's own libpython
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).exists():
        os.environ["LD_LIBRARY_PATH"] = libdir + (":" + os.environ["LD_LIBRARY_PATH"]
                                                  if os.environ.get("LD_LIBRARY_PATH") else "")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    card = json.loads((args.model / "model.json").read_text())
    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, metrics_address="127.0.0.1", metrics_port=args.metrics_port,
                          exit_on_error=True)
    with Triton(config=config) as triton:
        triton.bind(model_name="gen",
                    infer_func=[make_instance(args.model / "generator.onnx", int(card.get("num_classes") or 0),
                                              args.require_cuda) for _ in range(args.instances)],
                    inputs=[Tensor(name="seed", dtype=np.int64, shape=(1,))],
                    outputs=[Tensor(name="png", dtype=bytes, shape=(1,))],
                    config=ModelConfig(max_batch_size=args.max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
                    strict=True)
        triton.serve()


if __name__ == "__main__":
    main()
