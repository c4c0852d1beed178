"""Generated datasets and scan directories for the review web app's tests.

A scan directory follows the scanner's contract -- it is written through the same library
objects: ``labelaudit.db`` by :func:`labelaudit.scandir.database.write_scan`, ``scan.json``
as a :class:`labelaudit.scandir.ScanManifest` by :meth:`labelaudit.scandir.ScanDir.write_manifest`,
the other files under the names :class:`~labelaudit.scandir.ScanDir` gives them, and only
signal names of :data:`labelaudit.signals.SIGNALS` -- but its scores are synthetic: each image shows a
coloured shape of its *true* class and sits in the folder of its *given* class, and the
"model" suggests the true class with high confidence for the mislabeled ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from labelaudit.scandir import ScanDir, ScanManifest, ScanSummary
from labelaudit.scandir import database as storage
from labelaudit.signals import SIGNALS as SIGNAL_REGISTRY

XSS_CLASS = "<script>alert(1)</script>"

#: (class name, folder name, shape) — a class name need not be a valid folder name.
DEFAULT_CLASSES = (
    ("circle", "circle", "circle"),
    ("square", "square", "square"),
    ("triangle", "triangle", "triangle"),
    (XSS_CLASS, "script class", "cross"),
)

#: Awkward file names (spaces, unicode, quotes, ampersands) given to the first samples.
ODD_NAMES = ("img 01.png", "naïve 猫.png", "quote'\"s.png", "a&b <x>.png", "#hash%20?.png")

#: Signals stored per sample: names the scanner really writes (a rename there fails here).
SIGNALS = ("oos_self_confidence", "label_quality", "flip_agree_oos", "mean_loss", "aum")
assert set(SIGNALS) <= set(SIGNAL_REGISTRY), set(SIGNALS) - set(SIGNAL_REGISTRY)

PALETTE = [
    (230, 57, 70), (42, 157, 143), (233, 196, 106), (69, 123, 157), (244, 162, 97),
    (131, 56, 236), (58, 134, 255), (255, 0, 110), (6, 214, 160), (17, 138, 178),
]


def draw_shape(shape: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A ``size`` px RGB image of ``shape`` in a random colour on a noisy background."""
    bg = rng.integers(10, 70, size=3)
    arr = np.clip(bg + rng.normal(0, 8, size=(size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in PALETTE[int(rng.integers(len(PALETTE)))])
    s = size
    r = s * rng.uniform(0.28, 0.4)
    cx, cy = s / 2 + rng.uniform(-s * 0.08, s * 0.08), s / 2 + rng.uniform(-s * 0.08, s * 0.08)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=colour)
    elif shape == "cross":
        w = r * 0.38
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(s / 10)))
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=colour)
    elif shape == "bars":
        w = r / 2.5
        for k in (-2, 0, 2):
            d.rectangle([cx + k * w - w / 2, cy - r, cx + k * w + w / 2, cy + r], fill=colour)
    else:
        raise ValueError(shape)
    return img


@dataclass
class FakeScan:
    scan_dir: Path
    dataset_root: Path
    classes: list[str]
    scores: pd.DataFrame
    true_labels: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return ScanDir(self.scan_dir).database

    def flagged(self) -> pd.DataFrame:
        """Flagged rows (with their sample_id) in score order, highest first."""
        df = self.scores.reset_index(names="sample_id")
        return df[df.flagged].sort_values("mislabel_score", ascending=False)


def make_scan(
    base: Path,
    *,
    classes: tuple[tuple[str, str, str], ...] = DEFAULT_CLASSES,
    n_per_class: int = 12,
    noise: float = 0.3,
    image_size: int = 32,
    embeddings: bool = True,
    seed: int = 0,
    confusions: dict[str, tuple[str, float]] | None = None,
) -> FakeScan:
    """Write a dataset under ``base/dataset`` and its scan under ``base/scan``.

    ``confusions`` maps a given class to ``(true class, rate)``: that share of its images
    really show the other class (on top of the uniform ``noise``).
    """
    rng = np.random.default_rng(seed)
    base = Path(base)
    root = base / "dataset"
    scan_dir = base / "scan"
    scan_dir.mkdir(parents=True, exist_ok=True)
    names = [c[0] for c in classes]
    folders = {c[0]: c[1] for c in classes}
    shapes = {c[0]: c[2] for c in classes}
    n_classes = len(names)

    rows, top_classes, true_labels, probs_all = [], [], [], []
    odd = list(ODD_NAMES)
    for ci, given in enumerate(names):
        (root / folders[given]).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            mislabeled = rng.random() < noise
            true = names[(ci + 1 + int(rng.integers(n_classes - 1))) % n_classes] if mislabeled else given
            if confusions and given in confusions and rng.random() < confusions[given][1]:
                true, mislabeled = confusions[given][0], True
            fname = odd.pop(0) if odd and k in (1, 2) else f"{folders[given].replace(' ', '_')}_{k:03d}.png"
            rel = f"{folders[given]}/{fname}"
            draw_shape(shapes[true], rng, image_size).save(root / rel)
            # synthetic out-of-sample probabilities: confident in the true class
            logits = rng.normal(0, 1, n_classes)
            logits[names.index(true)] += rng.uniform(2.0, 5.0)
            if not mislabeled and rng.random() < 0.15:  # a few hard clean samples
                logits[(ci + 1) % n_classes] += 3.5
            p = np.exp(logits - logits.max())
            p /= p.sum()
            probs_all.append(p)
            suggested = names[int(p.argmax())]
            score = float(1.0 - p[ci]) if suggested != given else float(rng.uniform(0.0, 0.35) * (1 - p[ci]))
            order = np.argsort(-p)[:5]
            top_classes.append([(names[j], float(p[j])) for j in order])
            true_labels.append(true)
            signals = {
                "oos_self_confidence": float(p[ci]),
                "label_quality": float(p[ci] * rng.uniform(0.8, 1.0)),
                "flip_agree_oos": float(rng.random() < 0.8),
                "mean_loss": None if rng.random() < 0.2 else float(rng.uniform(0, 3)),
                "aum": float(p[ci] - np.max(np.delete(p, ci))),
            }
            rows.append({"path": rel, "given_label": given, "suggested_label": suggested,
                         "mislabel_score": round(score, 6), **signals})
    scores = pd.DataFrame(rows)
    scores["flagged"] = (scores["mislabel_score"] >= 0.5) & (scores["suggested_label"] != scores["given_label"])
    scores = scores[["path", "given_label", "suggested_label", "mislabel_score", "flagged", *SIGNALS]]
    scores[list(SIGNALS)] = scores[list(SIGNALS)].astype(float)
    probs = np.asarray(probs_all, dtype=np.float32)

    # noise matrix P(given = i | true = j) from the synthetic truth, columns sum to 1
    counts = np.zeros((n_classes, n_classes))
    for g, t in zip(scores["given_label"], true_labels):
        counts[names.index(g), names.index(t)] += 1
    matrix = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    class_counts = [int((scores["given_label"] == c).sum()) for c in names]
    summary = ScanSummary(
        n_samples=len(scores), n_classes=n_classes, n_skipped=1, n_flagged=int(scores["flagged"].sum()),
        estimated_noise_rate=float(np.mean([g != t for g, t in zip(scores["given_label"], true_labels)])),
        scan_dir=str(scan_dir.resolve()), device="cpu")
    manifest = _manifest(root, names, summary, matrix, image_size, seed)
    _write_scan(ScanDir(scan_dir), scores, manifest, class_counts, top_classes)
    layout = ScanDir(scan_dir)
    pd.DataFrame({"path": ["broken.png"], "reason": ["cannot identify image file"]}).to_csv(
        layout.skipped, index=False)
    pd.DataFrame(matrix, index=names, columns=names).to_csv(layout.noise_matrix)
    np.save(layout.pred_probs, probs)
    if embeddings:
        centers = rng.normal(0, 1, (n_classes, 16))
        emb = np.stack([centers[names.index(t)] + rng.normal(0, 0.35, 16) for t in true_labels])
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        np.save(layout.embeddings, emb.astype(np.float16))
    return FakeScan(scan_dir=scan_dir, dataset_root=root, classes=names, scores=scores, true_labels=true_labels)


def _manifest(root: Path, names: list[str], summary: ScanSummary, matrix: np.ndarray | None,
              image_size: int = 32, seed: int = 0) -> ScanManifest:
    """The manifest the scanner would write for these classes and figures."""
    return ScanManifest(
        created_at=storage.utc_now(), dataset_root=str(Path(root).resolve()), summary=summary,
        classes=list(names), score_components=["label_quality", "oos_self_confidence"],
        signals={n: {"direction": SIGNAL_REGISTRY[n].direction, "description": SIGNAL_REGISTRY[n].description}
                 for n in SIGNALS},
        noise_matrix=None if matrix is None else matrix.tolist(),
        config={"image_size": image_size, "folds": 5, "epochs": 12, "seed": seed, "flag_threshold": None},
    )


def _write_scan(layout: ScanDir, scores: pd.DataFrame, manifest: ScanManifest, class_counts, top_classes) -> None:
    """Database, scores.csv, then scan.json (last: it marks the scan complete), as the scanner does."""
    conn = storage.connect(layout.database)
    try:
        storage.write_scan(conn, scores, classes=manifest.classes, class_counts=class_counts,
                           top_classes=top_classes, signal_columns=list(SIGNALS), meta={})
    finally:
        conn.close()
    scores.to_csv(layout.scores, index=False)
    layout.write_manifest(manifest)


def make_big_scan(base: Path, n: int = 100_000, n_classes: int = 10, seed: int = 0) -> Path:
    """A scan of ``n`` synthetic samples without images (for query-speed tests); returns scan dir.

    Rows go straight into the tables (same schema as :func:`labelaudit.storage.write_scan`
    writes) because encoding 100,000 rows through it takes seconds.
    """
    rng = np.random.default_rng(seed)
    scan_dir = Path(base) / "bigscan"
    scan_dir.mkdir(parents=True, exist_ok=True)
    names = [f"class_{i:02d}" for i in range(n_classes)]
    given = rng.integers(n_classes, size=n)
    suggested = np.where(rng.random(n) < 0.2, rng.integers(n_classes, size=n), given)
    score = rng.random(n)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, n + 1)
    flagged = score > 0.2  # 80 % flagged: worst case for the queue
    paths = [f"{names[g]}/img_{i:06d}.png" for i, g in enumerate(given)]
    rows = [
        (i, paths[i], names[g], names[sg], float(sc), int(fl), int(rk),
         f'[["{names[sg]}", 0.7], ["{names[g]}", 0.2]]', f'{{"aum": {sc - 0.5:.4f}}}')
        for i, (g, sg, sc, fl, rk) in enumerate(zip(given.tolist(), suggested.tolist(), score.tolist(),
                                                    flagged.tolist(), rank.tolist()))
    ]
    conn = storage.connect(ScanDir(scan_dir).database)
    try:
        now = storage.utc_now()
        picks = rng.choice(n, size=20_000, replace=False).tolist()
        decisions = [(paths[i], "accept", names[given[i]], "", "bench", now) for i in picks]
        decisions += [(paths[i], "unusable", None, "", "bench", now) for i in picks[:3000]]
        with storage.transaction(conn):
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO classes VALUES (?, ?, ?)",
                             [(i, c, int((given == i).sum())) for i, c in enumerate(names)])
            conn.executemany(
                "INSERT INTO decisions (path, action, label, note, reviewer, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
                decisions)
    finally:
        conn.close()
    summary = ScanSummary(n_samples=n, n_classes=n_classes, n_flagged=int(flagged.sum()))
    ScanDir(scan_dir).write_manifest(_manifest(scan_dir, names, summary, None))
    return scan_dir


def clone_scan(template: FakeScan, base: Path) -> FakeScan:
    """A copy of ``template`` (dataset and scan) under ``base``, pointing at its own images."""
    import shutil

    base = Path(base)
    shutil.copytree(template.dataset_root, base / "dataset", symlinks=True)
    shutil.copytree(template.scan_dir, base / "scan", symlinks=True)
    layout = ScanDir(base / "scan")
    manifest = layout.read_manifest()
    manifest.dataset_root = str((base / "dataset").resolve())
    layout.write_manifest(manifest)
    return FakeScan(scan_dir=base / "scan", dataset_root=base / "dataset", classes=list(template.classes),
                    scores=template.scores.copy(), true_labels=list(template.true_labels))


#: Annotators of :func:`add_annotations` and the accuracy each labels with.
ANNOTATORS = {"ana": 0.95, "ben": 0.85, "cy": 0.45}


def add_annotations(scan: FakeScan, seed: int = 0) -> pd.DataFrame:
    """Give every image of ``scan`` 1-3 annotators' labels (votes, annotators table, summary, annotators.csv).

    The first image gets three votes for its given label (unanimous), the second two for it
    and ``cy``'s for another class (disputed). Returns the votes (``path, annotator, label``).
    """
    rng = np.random.default_rng(seed)
    names, rows = scan.classes, []
    for i, (path, given, true) in enumerate(zip(scan.scores.path, scan.scores.given_label, scan.true_labels)):
        who = list(ANNOTATORS) if i < 2 else list(rng.permutation(list(ANNOTATORS))[: rng.integers(1, 4)])
        for name in who:
            right = rng.random() < ANNOTATORS[name]
            label = given if i < 2 else true if right else names[int(rng.integers(len(names)))]
            if i == 1 and name == "cy":
                label = next(c for c in names if c != given)
            rows.append((path, name, label))
    votes = pd.DataFrame(rows, columns=["path", "annotator", "label"])
    consensus = votes.path.map(dict(zip(scan.scores.path, scan.scores.given_label)))
    table = pd.DataFrame([
        (name, int((votes.annotator == name).sum()), float((votes.label == consensus)[votes.annotator == name].mean()),
         acc - 0.02, f"{names[0]} -> {names[1]} (2)") for name, acc in ANNOTATORS.items()],
        columns=["annotator", "n_labels", "agreement", "quality", "most_confused"])
    layout = ScanDir(scan.scan_dir)
    conn = storage.connect(layout.database)
    try:
        with storage.transaction(conn):
            storage.write_annotations(conn, votes, table)
    finally:
        conn.close()
    table.to_csv(layout.annotators, index=False)
    manifest = layout.read_manifest()
    disputed = int(votes.assign(d=votes.label != consensus).groupby("path").d.any().sum())
    manifest.summary.consensus = {"n_annotators": len(ANNOTATORS), "n_annotations": len(votes), "n_disputed": disputed,
                                  "n_changed_from_majority": 0, "model_weight": 1.0}
    layout.write_manifest(manifest)
    return votes
