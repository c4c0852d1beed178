"""Command-line interface: ``labelaudit scan | demo | review | export``."""

from __future__ import annotations

import click

from labelaudit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labelaudit")
def main() -> None:
    """Find mislabeled images in a dataset and fix them in a local web app."""


# --- scan / demo: labelaudit.scanner, labelaudit.demo -------------------------------

# --- review / export: webapp, labelaudit.export -------------------------------------

import sys  # noqa: E402  (this section is self-contained)
from pathlib import Path  # noqa: E402

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


@main.command()
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
def review(scan_dir: Path, host: str, port: int, token: str | None, reviewer: str | None,
           open_browser: bool) -> None:
    """Serve the review web app for SCAN_DIR (made by `labelaudit scan`) and print its URL.

    Every decision is written to SCAN_DIR/labelaudit.db as soon as it is made. Stop the
    server with Ctrl+C; run it again later to carry on where you left off.
    """
    import secrets
    import socket
    import webbrowser

    import uvicorn

    from webapp.main import TOKEN_PATTERN, create_app, default_reviewer

    if token is not None and not TOKEN_PATTERN.match(token):
        raise click.BadParameter("use 8-256 characters from A-Z a-z 0-9 . _ ~ -", param_hint="--token")
    if token is None and not _is_loopback(host):
        token = secrets.token_urlsafe(24)
    try:
        app = create_app(scan_dir, token=token, reviewer=reviewer or default_reviewer())
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
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
    click.echo(f"Open {url}")
    if token:
        click.echo("Every request needs the token above; keep the URL private.")
    click.echo("Press Ctrl+C to stop. Decisions are saved as you make them.", err=False)
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(url)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command()
@click.argument("scan_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True), default=None,
              help="CSV to write ('-' for standard output)  [default: SCAN_DIR/cleaned_labels.csv]")
@click.option("--full", is_flag=True,
              help="Add original_label, decision, reviewer, decided_at, mislabel_score, suggested_label, note.")
@click.option("--auto-accept-above", type=click.FloatRange(0, 1), default=None, metavar="SCORE",
              help="Also give unreviewed samples scoring above SCORE their suggested label.")
@click.option("--include-unusable", is_flag=True,
              help="Keep samples marked unusable, with an empty label (for an audit trail; use with --full).")
@click.option("--to-folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also lay the cleaned dataset out as DIR/<label>/<file> (hard links; copies across devices).")
@click.option("--force", is_flag=True, help="Overwrite an existing CSV / write into a non-empty --to-folder.")
def export(scan_dir: Path, output: Path | None, full: bool, auto_accept_above: float | None,
           include_unusable: bool, to_folder: Path | None, force: bool) -> None:
    """Write the cleaned labels of SCAN_DIR as CSV `path,label`: review decisions applied,
    samples marked unusable dropped. Paths are relative to the scanned dataset folder."""
    from labelaudit import storage
    from labelaudit.export import cleaned_labels, copy_to_folder, export_summary, to_csv_text, write_cleaned_labels

    db_path = scan_dir / storage.DB_NAME
    if not db_path.is_file():
        raise click.ClickException(f"no {storage.DB_NAME} in {scan_dir}; run `labelaudit scan` first")
    conn = storage.connect(db_path)
    try:
        df = cleaned_labels(conn, full=full, auto_accept_above=auto_accept_above, include_unusable=include_unusable)
        counts = export_summary(conn, auto_accept_above=auto_accept_above)
        dataset_root = storage.read_meta(conn).get("dataset_root")
    finally:
        conn.close()
    to_stdout = str(output) == "-"
    out = None if to_stdout else (output or scan_dir / "cleaned_labels.csv")
    if to_folder is not None and dataset_root is None:
        raise click.ClickException("the scan does not record its dataset folder; cannot use --to-folder")
    try:
        if to_stdout:
            click.echo(to_csv_text(df), nl=False)
        else:
            write_cleaned_labels(df, out, force=force)
        copied = copy_to_folder(df, dataset_root, to_folder, force=force) if to_folder is not None else None
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    report = (f"{counts['n_kept']:,} samples kept ({counts['n_relabeled']:,} relabeled, "
              f"{counts['n_auto']:,} by --auto-accept-above), {counts['n_dropped']:,} dropped as unusable; "
              f"{counts['n_reviewed']:,} reviewed.")
    click.echo(("Wrote cleaned labels to standard output: " if to_stdout else f"Wrote {out}: ") + report,
               err=to_stdout)
    if copied is not None:
        click.echo(f"Cleaned dataset in {copied.dest}: {copied.n_linked:,} hard links, {copied.n_copied:,} copies"
                   + (f"; {len(copied.missing):,} image(s) missing, e.g. {copied.missing[0]}" if copied.missing
                      else "") + ".", err=to_stdout)
