"""Export: a training release -> a verified ONNX model folder with model.json (needs torch)."""
