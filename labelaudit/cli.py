"""Command-line interface: ``labelaudit scan | demo | review | export``."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import click

from labelaudit import __version__
from labelaudit.config import ScanConfig, Setting, settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labelaudit")
def main() -> None:
    """Find mislabeled images in a dataset and fix them in a local web app."""
    import warnings

    from labelaudit.errors import WeakModelsWarning

    warnings.simplefilter("ignore", WeakModelsWarning)  # the CLI's summary says it in its own words


# --- scan / demo: labelaudit.scanner, labelaudit.demo -------------------------------

def _scan_options(func=None, **defaults):
    """Options shared by ``scan`` and ``demo``: the ScanConfig fields declared ``cli=True``.

    Types, ranges, defaults and help come from each field's :class:`~labelaudit.config.Setting`;
    ``defaults`` overrides a default by field name (``demo`` scans at ``image_size=16``).
    """
    if func is None:
        return lambda f: _scan_options(f, **defaults)
    options = [_setting_option(name, spec, defaults.get(name, default))
               for name, (spec, default) in settings().items() if spec.cli]
    options.append(click.option("--quiet", "-q", is_flag=True, help="No progress bars."))
    for option in reversed(options):
        func = option(func)
    return func


def _setting_option(name: str, spec: Setting, default):
    """The ``--name`` click option of one ScanConfig field."""
    return click.option(f"--{name.replace('_', '-')}", type=_click_type(spec), default=default,
                        show_default=default is not None, help=spec.help)


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` (which compares false with every bound, so passes them)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail("nan is not a number in the range", param, ctx)
        return number


def _click_type(spec: Setting) -> click.ParamType:
    """A click type enforcing ``spec``'s kind and range (patterns are checked by ScanConfig)."""
    bounds = {"min": spec.min, "max": spec.max, "min_open": spec.min_open, "max_open": spec.max_open}
    if spec.kind is int:
        return click.IntRange(**bounds) if spec.min is not None or spec.max is not None else click.INT
    if spec.kind is float:
        return FiniteFloatRange(**bounds)
    return {bool: click.BOOL, str: click.STRING}[spec.kind]


def _config(flip: bool, **options) -> ScanConfig:
    """The ScanConfig of a command's options (those that are not settings, like ``quiet``, are ignored).

    Raises
    ------
    SettingsError
        A value the option types let through but the settings refuse (e.g. ``--device gpu``).
    """
    return ScanConfig(flip=flip, **{k: v for k, v in options.items() if k in settings()})


def _given_settings(options: dict) -> dict:
    """The settings among ``options`` given on the command line (not left at their defaults): they win
    over the ``--budget`` (:func:`labelaudit.config.resolve_budget`)."""
    ctx = click.get_current_context()
    return {k: v for k, v in options.items()
            if k in settings() and ctx.get_parameter_source(k) is click.core.ParameterSource.COMMANDLINE}


#: ``scan`` options of a scan from embeddings or predicted probabilities, by parameter name.
_ARRAY_OPTIONS = ("features", "features_flip", "pred_probs", "index")


def _array_options(func):
    """``--features``, ``--features-flip``, ``--pred-probs``, ``--index``: bring your own model
    (see :mod:`labelaudit.data.arrays`; the files are checked by the scan, with one-line errors)."""
    file = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.option("--features", type=file, default=None, metavar="FILE",
                     help="Embeddings (N, D) of the images, .npy or .parquet (path + vector column): train "
                          "small heads on them instead of CNNs, plus kNN label agreement."),
        click.option("--features-flip", type=file, default=None, metavar="FILE",
                     help="Embeddings of the horizontally mirrored images, row for row (flip signals)."),
        click.option("--pred-probs", type=file, default=None, metavar="FILE",
                     help="Your own out-of-sample probabilities (N, C), columns in sorted class-name order: "
                          "confident learning (+ kNN with --features), no training."),
        click.option("--index", type=file, default=None, metavar="CSV",
                     help="CSV with a path column naming the image of each array row, in order  "
                          "[default: the files in sorted path order]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: ``scan`` options that configure the Ray executor (``--ray-...``), by parameter name.
_RAY_OPTIONS = ("ray_address", "gpus_per_fold", "cpus_per_fold", "fold_retries", "ray_images")


def _executor_options(func):
    """``--executor`` and the options of the Ray executor (see :class:`~labelaudit.folds.ray_executor.RayExecutor`)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "threads", "stacked", "ray"]), default="local",
                     show_default=True,
                     help="Where folds train: this process one at a time, this process several at once "
                          "(threads; on CUDA one stream each), all at once as one stacked network (GPU), or Ray "
                          "tasks (needs Ray: pip install \"ray[client]>=2.9\")."),
        click.option("--fold-workers", type=click.IntRange(min=1), default=None,
                     help="With --executor threads: folds trained at the same time  [default: 2]"),
        click.option("--ray-address", default=None,
                     help="Ray cluster to use, e.g. ray://HEAD:10001  [default: $RAY_ADDRESS, else a local Ray]"),
        click.option("--gpus-per-fold", type=FiniteFloatRange(min=0), default=None,
                     help="GPUs per fold task (0.5: two folds share a GPU)  [default: 1 if the cluster has GPUs]"),
        click.option("--cpus-per-fold", type=FiniteFloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="CPUs per fold task (also its PyTorch threads)."),
        click.option("--fold-retries", type=click.IntRange(min=0), default=3, show_default=True,
                     help="Times a fold whose Ray worker died is run again."),
        click.option("--ray-images", type=click.Choice(["object-store", "shared-path"]), default="object-store",
                     show_default=True,
                     help="Images to the folds through Ray's object store (put once), or read by every node "
                          "from the scan directory (which must then be on a shared filesystem)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command(short_help="Rank every image by how likely its label is wrong.")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns path,label (paths relative to DATA_DIR) instead of class folders.")
@click.option("--annotations", "annotations_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Several annotators per image: CSV path,annotator,label (one row per annotation) or "
                   "path,<annotator 1>,<annotator 2>,... (empty cell = no label); the given label becomes "
                   "their consensus.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scan directory  [default: ./<DATA_DIR name>-scan]")
@click.option("--no-flip", is_flag=True,
              help="No mirror-image signals: for data whose meaning changes when mirrored (digits, text).")
@click.option("--keep-decisions", is_flag=True,
              help="--out holds review decisions made on another DATA_DIR, and this is that data, moved or "
                   "copied: keep them (matched by relative path). Without it such a scan is refused.")
@_array_options
@_scan_options
@_executor_options
def scan(data_dir: Path, labels_csv: Path | None, annotations_csv: Path | None, out: Path | None, no_flip: bool,
         keep_decisions: bool, quiet: bool, **options) -> None:
    """Train cross-validated models on DATA_DIR and rank every image by how likely it is mislabeled.

    DATA_DIR holds one sub-folder per class, or images listed in a --labels CSV, or images
    labelled by several annotators in an --annotations CSV.
    Re-running with the same arguments resumes from the folds already trained.
    With --executor ray the folds run as Ray tasks (this machine or a cluster).
    """
    from labelaudit.scanner import scan as run_scan

    out = out or Path.cwd() / f"{data_dir.resolve().name}-scan"
    ray_options = {name: options.pop(name) for name in _RAY_OPTIONS}
    fold_workers = options.pop("fold_workers")
    with _user_errors(), _echo_notices():
        executor = _executor(options.pop("executor"), ray_options, fold_workers)
        scores = run_scan(data_dir, out=out, labels_csv=labels_csv, annotations_csv=annotations_csv,
                          config=_config(not no_flip, **options), executor=executor, progress=not quiet,
                          keep_decisions=keep_decisions,
                          **{k: options[k] for k in _ARRAY_OPTIONS}, **_given_settings(options))
    print_summary(scores.attrs["summary"], out)


def _executor(name: str, ray_options: dict, fold_workers: int | None):
    """The executor of the ``--executor`` options: None (in process), a Threaded-, Stacked- or RayExecutor.

    Raises
    ------
    click.UsageError
        A Ray option given without ``--executor ray``, ``--fold-workers`` without ``--executor threads``.
    MissingExtra
        ``--executor ray`` without Ray installed.
    """
    ctx = click.get_current_context()
    if name != "ray":
        given = [f"--{n.replace('_', '-')}" for n in _RAY_OPTIONS
                 if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply with --executor ray")
    if fold_workers is not None and name != "threads":
        raise click.UsageError("--fold-workers only applies with --executor threads")
    if name == "local":
        return None
    if name in ("threads", "stacked"):
        from labelaudit.folds.executor import StackedExecutor, ThreadedExecutor

        return ThreadedExecutor(workers=fold_workers or 2) if name == "threads" else StackedExecutor()
    from labelaudit.folds.ray_executor import RayExecutor

    o = ray_options
    return RayExecutor(address=o["ray_address"], gpus_per_fold=o["gpus_per_fold"], cpus_per_fold=o["cpus_per_fold"],
                       retries=o["fold_retries"], images=o["ray_images"])


@contextlib.contextmanager
def _echo_notices():
    """Print each :class:`~labelaudit.errors.ScanNotice` as ``Warning: ...`` on stderr while the block runs
    (other warnings as Python shows them); the warning filters are restored afterwards."""
    import warnings

    from labelaudit.errors import ScanNotice

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ScanNotice):
                click.echo(f"Warning: {message}", err=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("always", ScanNotice)
        yield


@contextlib.contextmanager
def _user_errors():
    """Turn the errors a user can fix (bad data or settings, disk, no GPU) into one-line messages.

    Only by type: every :class:`~labelaudit.errors.LabelauditError` and ``OSError``.
    """
    from labelaudit.errors import LabelauditError

    try:
        yield
    except LabelauditError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(_os_error_text(exc)) from exc
    except KeyboardInterrupt:
        raise _Interrupted("interrupted; run the same command again to resume from the finished folds") from None


class _Interrupted(click.ClickException):
    """Ctrl+C: the message, and the shell's exit status of an interrupted command (128 + SIGINT)."""

    exit_code = 130


def _os_error_text(exc: OSError) -> str:
    """``exc`` as one line: its own message, or the system's reason and the file."""
    if exc.strerror is None:
        return str(exc)
    return f"{exc.strerror}: {exc.filename or ''}".rstrip(": ")


def print_summary(summary, out: Path) -> None:
    """The end-of-scan report: counts, estimated noise, what was not scored, where the results are.

    Parameters
    ----------
    summary : ScanSummary or dict
        :class:`~labelaudit.scandir.ScanSummary` or its :meth:`~ScanSummary.to_dict`.
    out : Path
        The scan directory.
    """
    from labelaudit.scandir import ScanDir, ScanSummary

    s = ScanSummary.from_dict(summary) if isinstance(summary, dict) else summary
    files = ScanDir(out)
    manifest = files.read_manifest() if files.manifest_path.exists() else None
    inputs = manifest.inputs if manifest is not None else None
    from_arrays = inputs is not None
    lines = [
        f"Scanned {s.n_samples:,} {'samples' if from_arrays else 'images'} in {s.n_classes} classes on {s.device}.",
        *_not_scored_lines(s, files),
        f"Out-of-sample accuracy against the given labels: {s.holdout_accuracy:.1%} "
        f"(always predicting the largest class: {s.majority_rate:.1%}).",
        *([_weak_models_warning(inputs, s, manifest.classes if manifest else [])] if s.weak_models else []),
        f"Estimated noise rate: {s.estimated_noise_rate:.1%} ({s.n_estimated_label_issues:,} samples, "
        + ("the consensus's expected wrong labels)." if s.consensus and not s.consensus.get("one_annotation_per_image")
           else "confident learning)."),
        f"Flagged for review: {s.n_flagged:,} ({s.n_flagged / max(s.n_samples, 1):.1%}).",
        *_consensus_lines(s, files),
        f"Results: {files.scores}  (database: {files.database})",
        f"Next: labelaudit review {out}",
    ]
    click.echo("\n".join(lines))


def _weak_models_warning(inputs, summary, classes) -> str:
    from labelaudit.scanner import weak_models_remedy

    remedy = weak_models_remedy(inputs, below_chance=summary.holdout_accuracy < summary.majority_rate, classes=classes)
    return ("Warning: the models are barely better than chance, so the scores and the noise estimate "
            f"below are unreliable; {remedy}.")


def _consensus_lines(s, files) -> list[str]:
    """Several annotators per image: annotations, disputed images, consensus changes, where annotators.csv is."""
    c = s.consensus
    if not c:
        return []
    return [f"Annotations: {c['n_annotations']:,} by {c['n_annotators']} annotators; annotators disagree on "
            f"{c['n_disputed']:,} images; the consensus differs from the majority vote on "
            f"{c['n_changed_from_majority']:,}; estimated wrong consensus labels: {c['estimated_wrong_consensus']:,}. "
            f"Per annotator: {files.annotators}"]


def _not_scored_lines(s, files) -> list[str]:
    """What the scan left out: skipped files and rows, unscored images, empty class folders."""
    kinds = s.skipped_by_kind()
    parts = [text for n, text in [
        (kinds["unreadable"], f"{kinds['unreadable']:,} unreadable"),
        (kinds["too_large"], f"{kinds['too_large']:,} too large to decode (exported with their label)"),
        (kinds["linked"], f"{kinds['linked']:,} in folders reached through a symbolic link"),
        (kinds["missing"], f"{kinds['missing']:,} missing file(s)"),
        (kinds["small_classes"], f"{kinds['small_classes']:,} in classes too small for the folds "
                                 f"({_names(s.small_classes)})"),
        (kinds["other"], f"{kinds['other']:,} other (paths outside the dataset or its class folders, "
                         "repeated CSV rows, links, hidden images, other scan folders)"),
    ] if n]
    lines = [
        f"Skipped {s.n_skipped:,} file(s) or CSV row(s)" + (": " + ", ".join(parts) if parts else "")
        + (f"; see {files.skipped}" if s.n_skipped else "") + "."
    ]
    if s.n_unscored:
        parts = [text for n, text in [
            (kinds["small_classes"], f"{kinds['small_classes']:,} in classes too small for the folds"),
            (kinds["too_large"], f"{kinds['too_large']:,} too large to decode")] if n]
        kept = f"{', '.join(parts)} (exported with their given label)" if parts else ""
        lost = (f"{kinds['unreadable']:,} that could not be decoded (left out of the export)"
                if kinds["unreadable"] else "")
        lines.append(f"Not scored: {s.n_unscored:,} labelled image(s): " + "; ".join(t for t in (kept, lost) if t) + ".")
    if s.empty_classes:
        lines.append(f"Empty class folder(s), no image: {_names(s.empty_classes)}.")
    return lines


def _names(names) -> str:
    """Class names for a one-line report: control characters (a newline in a label) written as ``\\xNN``."""
    from labelaudit.data.loading import escape_controls

    return ", ".join(escape_controls(str(name)) for name in names)


@main.command(short_help="Scan digits with known wrong labels; report what was caught.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("labelaudit-demo"),
              show_default=True, help="Where the demo dataset and its scan are written (relative to the current "
                                      "folder; a labelaudit clone's .gitignore lists labelaudit-demo/).")
@click.option("--noise", type=click.Choice(["symmetric", "asymmetric", "instance"]), default="symmetric",
              show_default=True, help="Kind of label noise injected.")
@click.option("--rate", type=FiniteFloatRange(0, 0.9), default=0.1, show_default=True,
              help="Fraction of labels made wrong.")
@click.option("--noise-seed", type=int, default=0, show_default=True)
# the digits are 8x8 pixels: 16 keeps every detail, 4x faster than 32; a quick demo keeps its 16 epochs
@_scan_options(image_size=16, min_fold_images=0)
def demo(out: Path, noise: str, rate: float, noise_seed: int, quiet: bool, **options) -> None:
    """Build a small dataset from scikit-learn's digits with known wrong labels, scan it, report.

    Digits change meaning when mirrored, so the demo scans with --no-flip. It takes under a
    minute on two idle CPU cores.
    """
    from labelaudit.demo import run_demo

    with _user_errors(), _echo_notices():
        report = run_demo(out, noise=noise, rate=rate, noise_seed=noise_seed,
                          config=_config(False, **options), progress=not quiet)
    print_summary(report["summary"], report["scan_dir"])
    click.echo(
        f"Injected {report['n_injected']} wrong labels ({noise}, {rate:.0%}); flagged {report['n_flagged']}, "
        f"of which {report['n_caught']} are injected errors: caught {report['n_caught']}/{report['n_injected']} "
        f"(recall {report['recall']:.0%}, precision {report['precision']:.0%}, "
        f"AUROC of mislabel_score {report['auroc']:.3f}). Truth: {report['truth_csv']}"
    )



# --- review / export: webapp, labelaudit.export -------------------------------------

def _is_loopback(host: str) -> bool:
    """Whether ``--host`` may be served without a token: the app's own test, so that every
    address served without a token is one whose ``Host`` the app accepts."""
    from labelaudit.webapp.security import is_loopback

    return is_loopback(host)


@main.command(short_help="Serve the review web app for a scan (http://127.0.0.1:8000).")
@click.argument("scan_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. Anything but loopback requires the access token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--token", default=None, metavar="TOKEN",
              help="Access token every request must carry (A-Z a-z 0-9 . _ ~ -, 8+ characters). "
                   "Generated and printed when --host is not loopback.")
@click.option("--reviewer", default=None, help="Name stored with each decision  [default: your OS user name]")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True,
              help="Open the review page in the default web browser.")
@click.option("--class-order", default=None, metavar="ORDER",
              help="Class order and number keys, stored in the scan for every reviewer: comma-separated "
                   "NAME or KEY=NAME (KEY a digit), e.g. 'cat,dog,7=bird'; 'natural' (numbers and number "
                   "words in numeric order, the default), 'dataset', or @FILE with one item per line.")
def review(scan_dir: Path, host: str, port: int, token: str | None, reviewer: str | None,
           open_browser: bool, class_order: str | None) -> None:
    """Serve the review web app for SCAN_DIR (made by `labelaudit scan`) and print its URL.

    Every decision is written to SCAN_DIR/labelaudit.db as soon as it is made. Stop the
    server with Ctrl+C; run it again later to carry on where you left off.
    """
    import secrets
    import socket
    import webbrowser

    import uvicorn

    from labelaudit.errors import LabelauditError
    from labelaudit.webapp.deps import is_reviewer_name
    from labelaudit.webapp.main import TOKEN_PATTERN, create_app, default_reviewer

    if token is not None and not TOKEN_PATTERN.match(token):
        raise click.BadParameter("use 8-256 characters from A-Z a-z 0-9 . _ ~ -", param_hint="--token")
    if reviewer is not None and not is_reviewer_name(reviewer):  # the rule the app holds every name to
        raise click.BadParameter("a reviewer name is 1-64 letters, digits, spaces or . _ ' @ + -",
                                 param_hint="--reviewer")
    if token is None and not _is_loopback(host):
        token = secrets.token_urlsafe(24)
    try:
        app = create_app(scan_dir, token=token, reviewer=reviewer or default_reviewer())
    except (FileNotFoundError, LabelauditError) as exc:
        raise click.ClickException(str(exc)) from exc
    if class_order is not None:
        _store_class_order(app, class_order)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # fail early, with a clear message
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                       "try another --port") from exc
        if port == 0:
            port = probe.getsockname()[1]
    shown = host if host not in ("0.0.0.0", "::") else socket.gethostname()
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    settings = app.state.settings
    click.echo(f"labelaudit review: {settings.scan_dir} ({len(settings.classes)} classes) "
               f"as reviewer '{settings.reviewer}'")
    if not settings.dataset_root.is_dir():
        click.echo("Warning: " + _moved_dataset_text(settings.dataset_root, scan_dir)
                   + "; until then the pages show no images.", err=True)
    click.echo(f"Open {url}")
    if token:
        click.echo("Every request needs the token above; keep the URL private.")
    click.echo("Press Ctrl+C to stop. Decisions are saved as you make them.", err=False)
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(url)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _store_class_order(app, spec: str) -> None:
    """Parse ``--class-order`` and store it in the scan database (BadParameter when it does not fit)."""
    from labelaudit.errors import ReviewSettingsError
    from labelaudit.review import parse_class_order

    if spec.startswith("@"):
        try:
            items = Path(spec[1:]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {spec[1:]}: {exc.strerror or exc}", param_hint="--class-order")
    else:
        items = spec.split(",")
    settings = app.state.settings
    try:
        order = parse_class_order(items, settings.classes)
    except ReviewSettingsError as exc:
        raise click.BadParameter(str(exc), param_hint="--class-order") from exc
    app.state.review.set_class_order(order, reviewer=settings.reviewer)
    click.echo("Class keys: " + "  ".join(f"{k}={c}" for k, c in order.key_list()))


@main.command(short_help="Write the cleaned labels (decisions applied) as CSV.")
@click.argument("scan_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True), default=None,
              help="CSV to write ('-' for standard output)  [default: SCAN_DIR/cleaned_labels.csv]")
@click.option("--full", is_flag=True,
              help="Add original_label, decision, reviewer, decided_at, mislabel_score, suggested_label, note "
                   "(several annotators per image: also consensus_label, n_annotations, agreement, votes).")
@click.option("--auto-accept-above", type=FiniteFloatRange(0, 1), default=None, metavar="SCORE",
              help="Also give unreviewed samples scoring above SCORE their suggested label.")
@click.option("--include-unusable", is_flag=True,
              help="Keep samples marked unusable, with an empty label (for an audit trail; use with --full).")
@click.option("--to-folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also lay the cleaned dataset out as DIR/<label>/<file> (hard links; copies across devices).")
@click.option("--force", is_flag=True, help="Overwrite an existing CSV / write into a non-empty --to-folder.")
@click.option("--mkdir", "make_parents", is_flag=True, help="Create the output CSV's missing parent folders.")
def export(scan_dir: Path, output: Path | None, full: bool, auto_accept_above: float | None,
           include_unusable: bool, to_folder: Path | None, force: bool, make_parents: bool) -> None:
    """Write the cleaned labels of SCAN_DIR as CSV `path,label`: review decisions applied,
    samples marked unusable dropped, images the scan could not score kept with their given
    label. Paths are relative to the scanned dataset folder."""
    from labelaudit.export import (
        STDOUT_NAMES, check_csv_not_a_copy_folder, check_csv_target, check_csv_writable, check_folder_target,
        copy_to_folder, to_csv_text, write_cleaned_labels,
    )
    from labelaudit.scandir import ScanDir

    files = ScanDir(scan_dir)
    with _user_errors():
        df, counts, dataset_root, dataset_paths, inputs = _cleaned(
            files, full=full, auto_accept_above=auto_accept_above, include_unusable=include_unusable)
    to_stdout = str(output) in ("-", *STDOUT_NAMES)  # the report goes to stderr
    out = None if to_stdout else (output or files.cleaned_labels)
    if to_folder is not None and dataset_root is None:
        raise click.ClickException("the scan does not record its dataset folder; cannot use --to-folder")
    if to_folder is not None and not Path(dataset_root).is_dir():
        raise click.ClickException(_moved_dataset_text(dataset_root, scan_dir) + "; --to-folder copies its images")
    with _user_errors():  # refuse before writing anything
        if out is not None:
            check_csv_target(out, files, dataset_root=dataset_root, dataset_paths=dataset_paths, inputs=inputs)
            check_csv_writable(out, force=force, parents=make_parents, made_before=to_folder)
            if to_folder is not None:
                check_csv_not_a_copy_folder(out, to_folder, df)
        if to_folder is not None:
            check_folder_target(to_folder, force=force, dataset_root=dataset_root)
        # the folder first: a CSV written into it would make it "not empty" and "not part of this export"
        copied = copy_to_folder(df, dataset_root, to_folder, force=force) if to_folder is not None else None
        if copied is not None and out is not None:  # this export's own CSV, written there before, is no stranger
            copied.others = [rel for rel in copied.others if os.path.realpath(to_folder / rel) != os.path.realpath(out)]
        if to_stdout:
            click.echo(to_csv_text(df), nl=False)
        else:
            write_cleaned_labels(df, out, force=force, parents=make_parents)
    click.echo(("Wrote cleaned labels to standard output: " if to_stdout else f"Wrote {out}: ")
               + _export_report(counts, files, listed_unusable=include_unusable), err=to_stdout)
    _report_copy(copied, to_stdout)
    if (problem := _manifest_problem(files)) is not None:  # a (re-)scan killed before its last step, or damage
        click.echo(f"Warning: {problem}, so this is the database as the last complete write left it (images a "
                   "re-scan added may be missing); run the scan again to finish it.", err=True)
    if copied is not None and copied.missing:  # the CSV is complete, the folder is not: say so in the exit status
        raise click.ClickException(f"{len(copied.missing):,} image(s) of the export are not in {dataset_root} "
                                   f"(moved or deleted since the scan), so {to_folder} lacks them; the CSV lists them")


def _moved_dataset_text(dataset_root, scan_dir) -> str:
    """The scanned folder is gone: what to do (re-scan it where it is now; the decisions are kept)."""
    return (f"the scanned dataset folder {dataset_root} is not there; if it moved, scan it at its new place into "
            f"the same folder: `labelaudit scan NEW_PLACE --out {scan_dir} --keep-decisions`")


def _cleaned(files, **options):
    """The cleaned-labels table, its counts, the dataset folder of the scan in ``files``, the dataset's
    files (:func:`labelaudit.export.dataset_files`) and the other files the scan read (its labels CSV).

    Raises
    ------
    ScanDirError
        No database in the folder.
    """
    from labelaudit.export import cleaned_labels, dataset_files, export_summary
    from labelaudit.review import accepted_labels_since_changed, orphaned_decisions
    from labelaudit.scandir import database as storage

    storage.check_holds_scan(files.require_database())
    conn = storage.connect(files.database, read_only=not os.access(files.path, os.W_OK))  # a read-only copy exports too
    try:  # one snapshot: a review app or a re-scan committing meanwhile changes neither the CSV nor its counts
        with storage.sqlite_errors(files.database), storage.read_snapshot(conn):
            df = cleaned_labels(conn, **options)
            counts = export_summary(conn, auto_accept_above=options["auto_accept_above"])
            recorded_root = storage.read_meta(conn).get("dataset_root")  # the database's own record of it
            paths = dataset_files(conn)
            counts["n_orphaned"] = len(orphaned_decisions(conn))
            counts["n_accepted_changed"] = len(accepted_labels_since_changed(conn))
    finally:
        conn.close()
    manifest = _read_manifest(files)
    counts["n_missing_files"] = manifest.summary.n_missing_files if manifest else 0
    counts["n_skipped_other"] = manifest.summary.skipped_by_kind()["other"] if manifest else 0
    counts["n_in_linked_folders"] = manifest.summary.n_in_linked_folders if manifest else 0
    counts["from_labels_csv"] = bool(manifest and manifest.label_files)
    # the scanned folder from the manifest (from the database when scan.json is missing or unreadable)
    inputs = manifest.label_files if manifest else []
    return df, counts, manifest.dataset_root if manifest else recorded_root, paths, inputs


def _manifest_problem(files) -> str | None:
    """Why the scan's ``scan.json`` cannot be read (missing: its last scan did not finish), None if it can."""
    from labelaudit.errors import ScanDirError

    if not files.manifest_path.exists():
        return f"no {files.MANIFEST} in {files.path}: its last scan did not finish"
    try:
        files.read_manifest()
    except ScanDirError as exc:
        return str(exc)
    return None


def _read_manifest(files):
    """The scan's manifest, None for a scan that did not finish (no readable scan.json)."""
    from labelaudit.errors import ScanDirError

    try:
        return files.read_manifest()
    except ScanDirError:
        return None


def _export_report(counts: dict[str, int], files, *, listed_unusable: bool = False) -> str:
    """One line: kept, relabeled, dropped, unscored, unreadable and missing images.

    ``listed_unusable``: the CSV lists the undecodable files, with an empty label (``--include-unusable``).
    """
    text = (f"{counts['n_kept']:,} samples kept ({counts['n_relabeled']:,} relabeled, "
            f"{counts['n_auto']:,} by --auto-accept-above), {counts['n_dropped']:,} dropped as unusable; "
            f"{counts['n_reviewed']:,} reviewed.")
    if counts["n_unscored"]:
        text += (f" Of the kept, {counts['n_unscored']:,} image(s) the scan did not score (too small a class for "
                 "the folds, or too large to decode) keep their given label.")
    if counts["n_unreadable"] and listed_unusable:
        text += (f" {counts['n_unreadable']:,} labelled file(s) that could not be decoded are listed with an "
                 f"empty label (--include-unusable; reasons in {files.skipped}).")
    elif counts["n_unreadable"]:
        text += (f" {counts['n_unreadable']:,} labelled file(s) that could not be decoded are left out; "
                 f"see {files.skipped} (--full --include-unusable lists them).")
    if counts.get("n_missing_files"):
        what = "labels-CSV row(s) whose file is missing" if counts["from_labels_csv"] else "broken link(s)"
        text += f" {counts['n_missing_files']:,} {what} are left out; see {files.skipped}."
    if counts.get("n_in_linked_folders"):
        text += (f" {counts['n_in_linked_folders']:,} file(s) in folders reached through a symbolic link were not "
                 f"scanned, so they are not in the export; see {files.skipped}.")
    if counts.get("n_skipped_other"):
        text += (f" {counts['n_skipped_other']:,} other row(s) the scan skipped (files outside class folders, "
                 f"links, hidden images, repeated CSV rows) are not exported as such; see {files.skipped}.")
    if counts.get("n_orphaned"):
        text += (f" {counts['n_orphaned']:,} review decision(s) name images this scan does not have (renamed, "
                 "moved or removed since): not applied; the review's overview lists them.")
    if counts.get("n_accepted_changed"):
        text += (f" {counts['n_accepted_changed']:,} accepted label(s) are no longer the given label (the labels "
                 "changed since the review): the export keeps the accepted label; the review's overview lists them.")
    return text


def _report_copy(copied, to_stdout: bool) -> None:
    if copied is not None:
        click.echo(f"Cleaned dataset in {copied.dest}: {copied.n_linked:,} hard links, {copied.n_copied:,} copies"
                   + (f"; {len(copied.missing):,} image(s) missing, e.g. {copied.missing[0]}" if copied.missing
                      else "") + ".", err=to_stdout)
        if copied.renamed:
            shown = ", ".join(f"{label!r} -> {folder}/" for label, folder in list(copied.renamed.items())[:5])
            more = f" (and {len(copied.renamed) - 5:,} more)" if len(copied.renamed) > 5 else ""
            click.echo(f"{len(copied.renamed):,} label(s) cannot be their own folder name (path characters, or "
                       f"a name that differs from another only in case): {shown}{more}.", err=to_stdout)
        if copied.others:
            click.echo(f"Warning: {len(copied.others):,} file(s) in {copied.dest} are not part of this export (an "
                       f"earlier export's? e.g. {copied.others[0]}); they were left as they are, so the folder holds "
                       "more than the CSV: export into an empty folder for an exact copy.", err=True)
