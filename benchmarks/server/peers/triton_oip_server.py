#!/usr/bin/env python3
"""Triton (the peer in ../../../shared/peers/triton: PyTriton's real tritonserver, its dynamic
batcher, one single-threaded ONNX Runtime session per instance) serving a model folder's
generator.onnx under the tensors ganserve's Open Inference Protocol route speaks, so one client
can send both servers the very same requests (benchmarks/server/oip_bench.py):

    input  SEED   INT64 [-1, 1]          one seed per row (the batch dim is Triton's)
    output IMAGE  UINT8 [-1, H, W, C]    the generator's pixels, as ganserve returns them

Per row z = Generator(PCG64(seed)).standard_normal(latent_dim, float32) and labels =
seed % classes, as ganserve draws them, so the pixels are the same.

    /tmp/triton-venv/bin/python triton_oip_server.py MODEL_DIR --name NAME [--http-port 8710] [--instances N]
"""
import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "shared" / "peers" / "triton"))
from server import use_own_libpython  # noqa: E402  (the peer's fix for Triton's Python stub)


def make_instance(onnx_path: Path, num_classes: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    latent_dim = int(session.get_inputs()[0].shape[1])

    @batch
    def infer(SEED: np.ndarray):  # noqa: N803  (the tensor's name)
        seeds = SEED.reshape(-1)
        z = np.empty((len(seeds), latent_dim), np.float32)
        for row, seed in enumerate(seeds):
            z[row] = np.random.Generator(np.random.PCG64(int(seed))).standard_normal(latent_dim, dtype=np.float32)
        feeds = {"z": z}
        if num_classes:
            feeds["labels"] = (seeds.astype(np.uint64) % np.uint64(num_classes)).astype(np.int64)
        return {"IMAGE": session.run(None, feeds)[0]}  # uint8 (B, H, W, C)

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model folder (generator.onnx and model.json)")
    parser.add_argument("--name", required=True, help="the model's name: the same as ganserve's")
    parser.add_argument("--http-port", type=int, default=8710)
    parser.add_argument("--instances", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    card = json.loads((args.model / "model.json").read_text())
    image = (card["height"], card["width"], card["channels"])
    use_own_libpython()
    logging.basicConfig(level=logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.http_port + 1, metrics_address="127.0.0.1", metrics_port=args.http_port + 2,
                          allow_gpu_metrics=False, exit_on_error=True)
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=args.name,
                    infer_func=[make_instance(args.model / "generator.onnx", card["num_classes"])
                                for _ in range(args.instances)],
                    inputs=[Tensor(name="SEED", dtype=np.int64, shape=(1,))],
                    outputs=[Tensor(name="IMAGE", dtype=np.uint8, shape=image)],
                    config=ModelConfig(max_batch_size=args.max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
                    strict=True)
        triton.serve()


if __name__ == "__main__":
    main()
