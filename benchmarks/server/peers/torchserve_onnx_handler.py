"""TorchServe handler for the benchmark: the exported generator.onnx under ONNX Runtime, so
TorchServe and ganserve run the very same graph on the very same engine.

Request body {"seed": N}; response {"png": base64 PNG}, as the TorchScript peer
(../../../shared/peers/torchserve/handler.py). Per request row: z = Generator(PCG64(seed))
standard normal (ganserve's seed contract), labels = seed % classes for a conditional model;
the graph runs on TorchServe's whole batch with one ONNX Runtime thread (PEER_THREADS);
each image is encoded with Pillow.
"""
import base64
import io
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler


class OnnxGeneratorHandler(BaseHandler):
    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(model_dir, "generator.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.latent_dim = int(inputs["z"].shape[1])
        with open(os.path.join(model_dir, "model.json")) as f:
            self.num_classes = int(json.load(f).get("num_classes") or 0)
        self.initialized = True

    def preprocess(self, data):
        seeds = []
        for row in data:
            body = row.get("body") or row.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            seeds.append(int(body["seed"]))
        z = np.stack([np.random.Generator(np.random.PCG64(s)).standard_normal(self.latent_dim, dtype=np.float32)
                      for s in seeds])
        feeds = {"z": z}
        if self.num_classes:
            feeds["labels"] = (np.asarray(seeds, np.uint64) % np.uint64(self.num_classes)).astype(np.int64)
        return feeds

    def inference(self, feeds):
        return self.session.run(None, feeds)[0]  # uint8 (N, H, W, C)

    def postprocess(self, images):
        out = []
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
            out.append({"png": base64.b64encode(buf.getvalue()).decode()})
        return out
