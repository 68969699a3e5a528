"""The service's Prometheus metrics, served on /metrics beside BentoML's own.

Kept in their own module so they are registered once per process."""

from prometheus_client import Counter, Gauge, Histogram

IMAGES_GENERATED = Counter("ganserve_images_generated_total", "Images returned by /generate")
IMAGES_SCORED = Counter("ganserve_images_scored_total", "Images scored by /score")
IMAGES_PROJECTED = Counter("ganserve_images_projected_total", "Images projected to latents by /project")
PROBABILITY = Histogram("ganserve_score_probability", "Calibrated p(real) returned by /score",
                        buckets=[i / 10 for i in range(1, 11)])
BATCH_ROWS = Histogram("ganserve_batch_size", "Images per ONNX Runtime run (cross-request batching)",
                       labelnames=["graph"], buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
EVENT_LOOP_LAG = Histogram("ganserve_event_loop_lag_seconds",
                           "How late the event loop woke a probe that sleeps 25 ms (work that holds the loop)",
                           buckets=[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])

MODEL_EVENTS = Counter("ganserve_model_versions_total",
                       "Model versions that went live, or were refused at load (verification, warm-up, spot check) or "
                       "at the quality gate", labelnames=["model", "event"])
# Across worker processes, the highest value: while workers switch, both versions read 1.
LIVE_VERSION = Gauge("ganserve_model_live", "1 for the version of each model that is live",
                     labelnames=["model", "version"], multiprocess_mode="livemax")
# Per worker, each with its own windows; across workers the highest, so one worker's drift shows.
DRIFT_PSI = Gauge("ganserve_drift_psi", "Population stability index of D's scores in the drift window against the "
                  "export's reference (stream score: /score's images vs held-out real; generate: a sample of "
                  "/generate's vs G's own at export); > 0.25: a real change", labelnames=["model", "stream"],
                  multiprocess_mode="livemax")
DRIFT_WINDOW = Gauge("ganserve_drift_window_images", "Images in the drift window (no index below 64)",
                     labelnames=["model", "stream"], multiprocess_mode="livemax")
