"""`ganserve eval --report DIR`: a Markdown page with the figures a person would rather look
at than read: the sample grid, the loss curves, D's calibrated probability on real and
generated images, and Fréchet distance against truncation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .calibration import fit_platt
from .release import Release
from .samples import release_images, save_grid

TRUNCATIONS = (0.5, 0.75, 1.0, 1.5, 2.0, None)


def write_report(folder: Path, release: Release, result: dict, space, real_reference: torch.Tensor,
                 real_other: torch.Tensor, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from .metrics import frechet_distance

    folder.mkdir(parents=True, exist_ok=True)
    count = len(real_other)
    save_grid(release_images(release, 64, seed), folder / "samples.png", columns=8, min_width=512)

    figures = []
    metrics_file = release.path.parent / "metrics.jsonl"
    if metrics_file.is_file():
        records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
        steps = [r["step"] for r in records]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, [r["loss_d"] for r in records], label="D loss")
        ax.plot(steps, [r["loss_g"] for r in records], label="G loss")
        ax.set_xlabel("step"), ax.legend(), ax.set_title("training losses")
        fig.tight_layout(), fig.savefig(folder / "losses.png", dpi=120), plt.close(fig)
        figures.append(("Training losses", "losses.png"))

    if not release.spec.num_classes:  # a conditional D needs each real image's label; not plotted
        discriminator = release.build_discriminator()
        with torch.no_grad():
            real_logits = discriminator(real_other).numpy()
            fake_logits = discriminator(release_images(release, count, seed + 1)).numpy()
        platt = fit_platt(real_logits, fake_logits)

        def calibrated(logits):
            return 1 / (1 + np.exp(-(platt["a"] * logits + platt["b"])))

        fig, ax = plt.subplots(figsize=(7, 3.5))
        bins = np.linspace(0, 1, 31)
        ax.hist(calibrated(real_logits), bins=bins, alpha=0.6, label="real")
        ax.hist(calibrated(fake_logits), bins=bins, alpha=0.6, label="generated")
        ax.set_xlabel("calibrated p(real)"), ax.legend()
        ax.set_title(f"D on real vs generated images (AUROC {platt['auroc']:.3f})")
        fig.tight_layout(), fig.savefig(folder / "d_probability.png", dpi=120), plt.close(fig)
        figures.append(("D's calibrated probability", "d_probability.png"))

    reference, _ = space.features(real_reference)
    fds = [frechet_distance(reference, space.features(release_images(release, count, seed + 2, psi))[0])
           for psi in TRUNCATIONS]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([str(p) if p else "none" for p in TRUNCATIONS], fds, marker="o")
    ax.axhline(result["real_vs_real"]["fd"], color="gray", linestyle="--", label="real vs real floor")
    ax.set_xlabel("truncation ψ"), ax.set_ylabel("Fréchet distance"), ax.legend()
    ax.set_title("Fréchet distance against truncation")
    fig.tight_layout(), fig.savefig(folder / "fd_truncation.png", dpi=120), plt.close(fig)
    figures.append(("Fréchet distance against truncation", "fd_truncation.png"))

    generated_figures, floor = result["generated"], result["real_vs_real"]
    rows = "\n".join(f"| {key} | {generated_figures[key]} | {floor[key]} |" for key in generated_figures
                     if key != "class_histogram")
    page = [f"# Evaluation of `{result['model']}`", "",
            f"Against `{result['data']}`, {result['num_images']} images per set; features: {result['feature_space']}.",
            "", "![samples](samples.png)", "", "| figure | generated | real vs real |", "|---|---|---|", rows, ""]
    for title, file in figures:
        page += [f"## {title}", "", f"![{title}]({file})", ""]
    (folder / "report.md").write_text("\n".join(page))
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return folder / "report.md"
