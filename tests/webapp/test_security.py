"""Escaping, image paths, the access token, the host check and same-origin POSTs."""

from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner
from webapp_support import BASE_URL, make_client
from fakescan import ODD_NAMES, XSS_CLASS

from labelaudit.scandir import database as storage
from labelaudit.cli import main

PAGES = ["/", "/queue", "/queue?flagged=all", "/grid?all=1", "/export", "/queue/rows?flagged=all&after=3",
         "/grid/cells?flagged=all", f"/grid?given=circle&suggested={XSS_CLASS}"]


def test_class_and_file_names_are_text_everywhere(client, scan):
    sid = int(scan.scores.index[scan.scores.given_label == XSS_CLASS][0])
    client.post("/api/decisions", json={"sample_id": 0, "action": "relabel", "label": XSS_CLASS,
                                        "note": "<img src=x onerror=alert(2)>"})
    pages = PAGES + [f"/samples/{sid}", "/samples/0", f"/queue?given={XSS_CLASS}"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, url
        html = r.text
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
        # the only <script> elements are the app's own file and its JSON config
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert all('src="/static/app.js"' in s or 'type="application/json"' in s for s in scripts), url
    html = client.get(f"/samples/{sid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # JSON inside <script> cannot close the element
    cfg = re.search(r'id="la-config">(.*?)</script>', html, re.S).group(1)
    assert "<" not in cfg and XSS_CLASS in json.loads(cfg)["classes"]


def test_odd_file_names_are_escaped_in_attributes(client, scan):
    html = client.get("/queue?flagged=all&sort=path").text + client.get("/queue?flagged=all").text
    for name in ODD_NAMES:
        if name not in set(scan.scores.path.str.split("/").str[-1]):
            continue
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace('"', "&#34;").replace("'", "&#39;")
        assert f'alt="{escaped}"' in html, name
    assert 'quote\'"s' not in html


def test_api_returns_names_verbatim(client):
    items = client.get("/api/samples", params={"given": XSS_CLASS}).json()["items"]
    assert items and items[0]["given_label"] == XSS_CLASS


def break_path(scan, sample_id: int, new_path: str) -> None:
    conn = storage.connect(scan.db_path)
    conn.execute("UPDATE samples SET path = ? WHERE sample_id = ?", (new_path, sample_id))
    conn.close()


def test_images_only_from_the_dataset_root(scan, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes((scan.dataset_root / scan.scores.path[0]).read_bytes())
    # a symlink inside the root pointing out of it
    (scan.dataset_root / "circle" / "escape.png").symlink_to(secret)
    # a symlink inside the root pointing to another file inside it: fine
    (scan.dataset_root / "circle" / "inside.png").symlink_to(scan.dataset_root / scan.scores.path[0])
    break_path(scan, 1, "../secret.png")
    break_path(scan, 2, "circle/escape.png")
    break_path(scan, 3, str(secret))
    break_path(scan, 4, "circle/inside.png")
    break_path(scan, 5, "circle/../../secret.png")
    break_path(scan, 6, "circle/does-not-exist.png")
    with make_client(scan.scan_dir) as c:
        for sid in (1, 2, 3, 5):
            for kind in ("image", "thumbnail"):
                r = c.get(f"/api/samples/{sid}/{kind}")
                assert r.status_code == 403, (sid, kind)
        assert c.get("/api/samples/4/image").status_code == 200
        assert c.get("/api/samples/6/image").status_code == 404
        for url in ("/static/../labelaudit.db", "/static/%2e%2e/labelaudit.db", "/static/..%2f..%2fetc/passwd"):
            r = c.get(url)
            assert r.status_code == 404 and b"SQLite" not in r.content, url


def test_security_headers(client):
    r = client.get("/queue")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/api/samples/0/image").headers["x-content-type-options"] == "nosniff"


def test_cross_origin_posts_are_refused(client):
    body = {"sample_id": 0, "action": "unusable"}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "null", "Sec-Fetch-Site": "cross-site"}, {"Origin": "null", "Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://127.0.0.1:9999"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.post("/api/decisions", json=body, headers=headers)
        assert r.status_code == 403, headers
        r = client.post("/samples/0/decision", data={"action": "unusable"}, headers=headers)
        assert r.status_code == 403, headers
        assert client.post("/api/decisions/undo", headers=headers).status_code == 403
    assert client.get("/api/decisions").json() == []
    ok = client.post("/api/decisions", json=body, headers={"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200
    # a form of the app's own pages: "Origin: null" (no-referrer policy), Sec-Fetch-Site same-origin
    form = client.post("/samples/0/decision", data={"action": "accept"},
                       headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert form.status_code == 303
    # GET stays open to links from elsewhere (it changes nothing)
    assert client.get("/queue", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_decisions_need_post(client):
    assert client.get("/api/decisions/undo").status_code == 405
    assert client.get("/samples/0/decision").status_code == 405


def test_host_check_without_token(scan):
    with make_client(scan.scan_dir) as c:
        assert c.get("/", headers={"Host": "evil.example"}).status_code == 421
        assert c.get("/", headers={"Host": "evil.example:8000"}).status_code == 421
        assert c.get("/", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/", headers={"Host": "[::1]:8000"}).status_code == 200


def test_token_is_checked_on_every_request(scan):
    token = "s3cret-token-123"
    with make_client(scan.scan_dir, token=token) as c:
        for url in ("/", "/queue", "/api/samples", "/api/samples/0/image", "/static/app.js", "/openapi.json",
                    "/docs"):
            assert c.get(url).status_code == 403, url
        assert c.post("/api/decisions", json={"sample_id": 0, "action": "accept"}).status_code == 403
        assert c.get("/api/samples", params={"token": "wrong-token-000"}).status_code == 403
        assert c.get("/api/samples", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/samples", headers={"X-Labelaudit-Token": token}).status_code == 200
        # any host name is fine with a token (served beyond loopback)
        assert c.get("/api/samples", params={"token": token}, headers={"Host": "10.1.2.3:8000"}).status_code == 200
        # a browser navigation with ?token= gets a cookie and a clean URL
        r = c.get("/queue", params={"token": token, "flagged": "all"}, headers={"Sec-Fetch-Mode": "navigate"},
                  follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/queue?flagged=all"
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=strict" in r.headers["set-cookie"].replace(
            "SameSite=Strict", "SameSite=strict")
        assert c.get("/queue").status_code == 200  # the cookie now carries the token
        assert c.post("/api/decisions", json={"sample_id": 0, "action": "accept"},
                      headers={"Origin": BASE_URL}).status_code == 200
    from labelaudit.errors import ReviewSettingsError

    with pytest.raises(ReviewSettingsError, match="token"):
        make_client(scan.scan_dir, token="short")


def test_cli_review_needs_a_token_beyond_loopback(scan, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 0, r.output
    token = re.search(r"\?token=([A-Za-z0-9_\-]+)", r.output).group(1)
    assert len(token) >= 24
    app, kw = calls[0]
    assert kw["host"] == "0.0.0.0" and app.state.settings.token == token
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--port", "0", "--reviewer", "zoe"])
    assert r.exit_code == 0 and "?token=" not in r.output and "http://127.0.0.1:" in r.output
    app, kw = calls[1]
    assert kw["host"] == "127.0.0.1" and app.state.settings.token is None
    assert app.state.settings.reviewer == "zoe"
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--token", "bad token!"])
    assert r.exit_code != 0
    # a name the app refuses in X-Labelaudit-Reviewer is refused here too (a script could not act as it)
    for bad in ("../x", "a" * 65, "zoe<script>"):
        r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--port", "0", "--reviewer", bad])
        assert r.exit_code == 2 and "--reviewer" in r.output and len(calls) == 2, r.output
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir.parent)])
    assert r.exit_code != 0 and "labelaudit scan" in r.output


def test_cli_review_warns_when_the_dataset_folder_has_moved(scan, monkeypatch, tmp_path):
    """It started silently and served 404 for every image."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--port", "0"])
    assert r.exit_code == 0 and "Warning" not in r.output
    scan.dataset_root.rename(tmp_path / "elsewhere")
    r = CliRunner().invoke(main, ["review", str(scan.scan_dir), "--port", "0"])
    assert r.exit_code == 0 and "is not there" in r.output and "--keep-decisions" in r.output, r.output


def test_reviewer_defaults_to_os_user(scan, monkeypatch):
    monkeypatch.setenv("USER", "osuser")
    monkeypatch.setenv("LOGNAME", "osuser")
    from labelaudit.errors import ReviewSettingsError
    from labelaudit.webapp import create_app

    assert create_app(scan.scan_dir).state.settings.reviewer == "osuser"
    monkeypatch.setenv("USER", "domain\\user")  # no valid reviewer name: the app's fallback name
    monkeypatch.setenv("LOGNAME", "domain\\user")
    assert create_app(scan.scan_dir).state.settings.reviewer == "reviewer"
    for bad in ("../x", "zoe\n", "   ", " zoe"):  # a trailing newline passed `$`; blanks passed the pattern
        with pytest.raises(ReviewSettingsError, match="reviewer name"):
            create_app(scan.scan_dir, reviewer=bad)


def test_db_file_not_reachable(client):
    for url in ("/labelaudit.db", "/../labelaudit.db", "/api/../labelaudit.db"):
        assert client.get(url).status_code == 404
    assert not os.path.exists("labelaudit.db")
