"""Render ``benchmarks/detect.py`` JSON lines as the README's markdown tables.

    python benchmarks/table.py benchmarks/results/detect-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(paths: list[str]) -> list[dict]:
    return [_normalise(json.loads(line)) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def _normalise(run: dict) -> dict:
    """Runs made before the separate baseline existed called the shared-model recipe "cleanlab"."""
    if "cleanlab_on_labelaudit_models" not in run:
        run["cleanlab_on_labelaudit_models"] = run.pop("cleanlab")
    return run


def _noise(r: dict) -> str:
    """``symmetric 20%`` for injected noise, ``human: random1`` for real human labels."""
    if r.get("rate") is None:
        return str(r["noise"]).replace("human:", "human: ")
    return f"{r['noise']} {r['rate']:.0%}"


def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def detection_table(runs: list[dict]) -> str:
    rows = ["| noise | method | AUROC | AP | precision | recall | F1 | flagged |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        noise = f"{_noise(r)} (actual {r['actual_noise_rate']:.1%})"
        methods = [("**labelaudit** `mislabel_score` / `flagged`", r["labelaudit"])]
        if "cleanlab" in r:
            methods.append(("cleanlab recipe, own training (flip augmentation)", r["cleanlab"]))
        methods.append(("cleanlab recipe on labelaudit's fold models", r["cleanlab_on_labelaudit_models"]))
        for name, m in methods:
            rows.append(f"| {noise} | {name} | {_fmt(m['auroc'])} | {_fmt(m['ap'])} | {_fmt(m['precision'])} | "
                        f"{_fmt(m['recall'])} | {_fmt(m['f1'])} | {m['n_flagged']} |")
    return "\n".join(rows)


def run_table(runs: list[dict]) -> str:
    rows = ["| noise | images | device | wall (s) | scan images/s | train images/s | peak RSS (MB) | "
            "OOS acc. (given / true) | est. noise | suggestion = truth on wrong labels | baseline wall (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        base = r.get("cleanlab", {}).get("wall_s")
        rows.append(
            f"| {_noise(r)} | {r['n_samples']:,} | {r['device']} | {r['wall_s']:.0f} | "
            f"{r['samples_per_s']:.1f} | {r['train_images_per_s']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['oos_accuracy_given']:.3f} / {r['oos_accuracy_true']:.3f} | {r['estimated_noise_rate']:.1%} | "
            f"{_fmt(r.get('suggestion_true_on_wrong'))} | {'n/a' if base is None else f'{base:.0f}'} |")
    return "\n".join(rows)


def signal_table(runs: list[dict]) -> str:
    names = list(runs[0]["signals_auroc"])
    head = "| signal | " + " | ".join(_noise(r) for r in runs) + " |"
    rows = [head, "| --- |" + " --- |" * len(runs)]
    for n in names:
        rows.append(f"| `{n}` | " + " | ".join(_fmt(r["signals_auroc"].get(n)) for r in runs) + " |")
    for recipe in runs[0]["recipes"]:
        rows.append(f"| recipe `{recipe}` (AUROC / AP) | " + " | ".join(
            f"{_fmt(r['recipes'][recipe]['auroc'])} / {_fmt(r['recipes'][recipe]['ap'])}" for r in runs) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    runs = load(sys.argv[1:])
    print(detection_table(runs), run_table(runs), signal_table(runs), sep="\n\n")
    print("\nCommands:\n" + "\n".join(f"    {r['command']}" for r in runs))
