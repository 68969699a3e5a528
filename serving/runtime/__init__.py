"""ONNX Runtime, and nothing about GANs: which execution providers to ask for, how many CPUs
this process may use, and `Graph`, one ONNX graph opened for a device behind `run(feeds)`."""
