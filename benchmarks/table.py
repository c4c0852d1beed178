"""Render ``benchmarks/detect.py`` JSON lines as the README's markdown tables.

    python benchmarks/table.py benchmarks/results/detect-*.json
    python benchmarks/table.py --seeds benchmarks/results/detect-report-margin-recipe.jsonl

``--seeds`` groups the runs by noise and prints mean ± standard deviation (sample standard
deviation, ddof=1) over the seeds of each group, for the default and for every recipe.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def per_class_table(run: dict) -> str:
    """Flags per given class of one run (``detect.py``'s ``per_class``): labelaudit and the plain recipe."""
    rows = ["| given class | images | wrong | labelaudit: flagged, precision / recall | "
            "cleanlab recipe: flagged, precision / recall |", "| --- | --- | --- | --- | --- |"]
    for name, f in run["per_class"].items():
        cells = [f"{m['flagged']}, {_fmt(m['precision'], 2)} / {_fmt(m['recall'], 2)}"
                 for m in (f["labelaudit"], f["cleanlab"])]
        rows.append(f"| {name} | {f['n']:,} | {f['wrong']:,} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def load(paths: list[str]) -> list[dict]:
    return [_normalise(json.loads(line)) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def _normalise(run: dict) -> dict:
    """Runs made before the separate baseline existed called the shared-model recipe "cleanlab"."""
    if "cleanlab_on_labelaudit_models" not in run:
        run["cleanlab_on_labelaudit_models"] = run.pop("cleanlab")
    return run


def _noise(r: dict) -> str:
    """``symmetric 20%`` for injected noise, ``human: random1`` for real human labels; with
    ``, long tail 10x`` for a class-imbalanced subset (``detect.py --long-tail``)."""
    name = (str(r["noise"]).replace("human:", "human: ") if r.get("rate") is None
            else f"{r['noise']} {r['rate']:.0%}")
    tail = r.get("long_tail", 1)
    return name if tail in (None, 1) else f"{name}, long tail {tail:g}x"


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


def _mean_std(values: list[float], digits: int = 3) -> str:
    """``0.918 ± 0.002`` (sample standard deviation); the bare value for a single run."""
    if len(values) == 1:
        return _fmt(values[0], digits)
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def group_by_noise(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs keyed by their noise (``human: random1``, ``symmetric 20%``), in first-seen order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        groups[_noise(r)].append(r)
    return dict(groups)


def _wall(run: dict) -> str:
    """Seconds of the run, or ``rescored`` where it scored folds trained by an earlier run."""
    return "rescored" if run.get("rescored_from_stored_folds") else f"{run['wall_s']:.0f}"


def seeds_table(runs: list[dict]) -> str:
    """Mean ± std over the runs of each noise: the default's and the shared-model cleanlab recipe's
    detection figures, then AUROC / AP of every recipe all the runs of a group carry."""
    rows = ["| noise | seeds | method | AUROC | AP | precision | recall | F1 | flagged |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for noise, group in group_by_noise(runs).items():
        for name, key in [("**labelaudit** `mislabel_score` / `flagged`", "labelaudit"),
                          ("cleanlab recipe on labelaudit's fold models", "cleanlab_on_labelaudit_models")]:
            cells = [_mean_std([r[key][m] for r in group], 0 if m == "n_flagged" else 3)
                     for m in ("auroc", "ap", "precision", "recall", "f1", "n_flagged")]
            rows.append(f"| {noise} | {len(group)} | {name} | " + " | ".join(cells) + " |")
        recipes = [n for n in group[0]["recipes"] if all(n in r["recipes"] for r in group)]
        for recipe in recipes:
            auroc = _mean_std([r["recipes"][recipe]["auroc"] for r in group])
            ap = _mean_std([r["recipes"][recipe]["ap"] for r in group])
            rows.append(f"| {noise} | {len(group)} | recipe `{recipe}` | {auroc} | {ap} | | | | |")
    extra = ["", "| noise | wall (s), per run | OOS acc. (given / true) | est. noise | suggestion = truth on wrong labels |",
             "| --- | --- | --- | --- | --- |"]
    for noise, group in group_by_noise(runs).items():
        walls = " / ".join(_wall(r) for r in group)
        acc = (f"{_mean_std([r['oos_accuracy_given'] for r in group])} / "
               f"{_mean_std([r['oos_accuracy_true'] for r in group])}")
        est = _mean_std([100 * r["estimated_noise_rate"] for r in group], 1) + "%"
        sugg = [r["suggestion_true_on_wrong"] for r in group if r.get("suggestion_true_on_wrong") is not None]
        extra.append(f"| {noise} | {walls} | {acc} | {est} | {_mean_std(sugg) if sugg else 'n/a'} |")
    return "\n".join(rows + extra)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", action="store_true",
                        help="mean ± standard deviation over the seeds of each noise (one table)")
    parser.add_argument("files", nargs="+", help="JSON-lines files written by benchmarks/detect.py")
    args = parser.parse_args(argv)
    runs = load(args.files)
    if args.seeds:
        print(seeds_table(runs))
    else:
        print(detection_table(runs), run_table(runs), signal_table(runs), sep="\n\n")
        for r in runs:
            if r.get("per_class"):
                print(f"\nPer class, {_noise(r)}, images of index in {r.get('index_range')}:\n\n{per_class_table(r)}")
    print("\nCommands:\n" + "\n".join(f"    {r['command']}" for r in runs))


if __name__ == "__main__":
    main()
