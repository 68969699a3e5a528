"""The service's Prometheus metrics (served on /metrics beside BentoML's own).

Kept in their own module so they are registered once per process."""

import bentoml

IMAGES_GENERATED = bentoml.metrics.Counter(name="ganserve_images_generated_total",
                                           documentation="Images returned by /generate")
IMAGES_SCORED = bentoml.metrics.Counter(name="ganserve_images_scored_total", documentation="Images scored")
PROBABILITY = bentoml.metrics.Histogram(name="ganserve_score_probability",
                                        documentation="Calibrated p(real) returned by /score",
                                        buckets=[i / 10 for i in range(1, 11)])
BATCH_ROWS = bentoml.metrics.Histogram(name="ganserve_batch_size", labelnames=["graph"],
                                       documentation="Images per ONNX Runtime run (cross-request batching)",
                                       buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
