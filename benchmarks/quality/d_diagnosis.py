"""Why does D fall to chance? Train with a recipe and, every --probe-every steps, measure D itself.

Per probe (on held-out real images and on G_ema's images, neither of which D trained on):
- D's logits: mean and spread on real and on generated images, and the AUC with which they
  separate the two (0.5: D cannot tell them apart);
- a linear probe: logistic regression on D's penultimate features, fitted on half the probe
  images and scored on the other half (can D's features tell them apart even where its head
  cannot?);
- D's gain: the norm of its logit differences over the norm of the image differences, for
  pairs of real and generated images (spectral normalisation bounds it by 1);
- the gradient norms of D's and G's last update.

    python -m benchmarks.quality.d_diagnosis --data folder:FACES --steps 2000 --threads 1 \
        --set spectral_norm=false,r1_gamma=1 --name d-diagnosis-r1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from benchmarks.common import machine, parse_args, result_path
from training import distributed
from training.config import TrainConfig
from training.data import load_dataset, split_holdout
from training.loop import Trainer

PROBE_IMAGES = 512


def parse_overrides(text: str) -> dict:
    """'spectral_norm=false,r1_gamma=1' -> {"spectral_norm": False, "r1_gamma": 1.0}."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, raw = part.split("=", 1)
        lowered = raw.lower()
        if lowered in ("true", "false"):
            values[key] = lowered == "true"
        else:
            try:
                values[key] = int(raw)
            except ValueError:
                try:
                    values[key] = float(raw)
                except ValueError:
                    values[key] = raw
    return values


def grad_norm(net: torch.nn.Module) -> float:
    grads = [p.grad.detach().float().norm() for p in net.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


class MeasuredTrainer(Trainer):
    """A Trainer that remembers the gradient norm of each network's last update."""

    grad_norms: dict

    def _update(self, net, optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.grad_norms = getattr(self, "grad_norms", {})
        self.grad_norms["G" if net is self.G else "D"] = grad_norm(net)
        self.scaler.step(optimizer)


@torch.no_grad()
def probe(trainer: Trainer, real: torch.Tensor) -> dict:
    D = trainer.D.eval()
    z = torch.randn(len(real), trainer.spec.latent_dim, generator=torch.Generator().manual_seed(99))
    fake = trainer.G_ema(z).float()
    features = {"real": D.body(real).float(), "fake": D.body(fake).float()}
    logits = {k: D.head(v, None).float().numpy() for k, v in features.items()}
    D.train()
    labels = np.r_[np.ones(len(real)), np.zeros(len(fake))]
    scores = np.r_[logits["real"], logits["fake"]]
    feats = np.r_[features["real"].numpy(), features["fake"].numpy()]
    half = np.arange(len(labels)) % 2 == 0
    linear = LogisticRegression(max_iter=2000, C=1.0).fit(feats[half], labels[half])
    image_gap = (real - fake).flatten(1).norm(dim=1)
    logit_gap = torch.from_numpy(np.abs(logits["real"] - logits["fake"]))
    return {
        "logit_real_mean": float(logits["real"].mean()), "logit_real_std": float(logits["real"].std()),
        "logit_fake_mean": float(logits["fake"].mean()), "logit_fake_std": float(logits["fake"].std()),
        "auc_d": float(roc_auc_score(labels, scores)),
        "auc_linear_probe": float(roc_auc_score(labels[~half], linear.decision_function(feats[~half]))),
        "gain": float((logit_gap / image_gap).median()),
        "feature_norm_real": float(features["real"].norm(dim=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--probe-every", type=int, default=250)
    parser.add_argument("--set", default="", help="TrainConfig fields, e.g. spectral_norm=false,r1_gamma=1")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--name", default="d-diagnosis")
    args = parse_args(parser, data="digits", steps=20, probe_every=10)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(data=args.data, steps=args.steps, **parse_overrides(args.set))
    data = load_dataset(config.data, config.resolution, config.channels)
    train_set, held_out = split_holdout(data, config.holdout, config.seed)
    trainer = MeasuredTrainer(config, train_set, distributed.init("cpu"))
    real = held_out.batch(range(min(PROBE_IMAGES, len(held_out))))
    records, start = [], time.perf_counter()
    while trainer.step_count < args.steps:
        losses = trainer.step()
        if trainer.step_count % args.probe_every == 0:
            record = {"step": trainer.step_count, "seconds": round(time.perf_counter() - start, 1),
                      **{k: round(v, 5) for k, v in losses.items()},
                      **{f"grad_{k}": round(v, 5) for k, v in trainer.grad_norms.items()},
                      **{k: round(v, 5) for k, v in probe(trainer, real).items()}}
            records.append(record)
            print(json.dumps(record), flush=True)
    out = result_path(args.name)
    out.write_text(json.dumps({"machine": machine(), "data": args.data, "overrides": args.set,
                               "config": trainer.config.to_dict(), "records": records}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
