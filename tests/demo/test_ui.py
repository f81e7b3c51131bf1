"""`make ui`'s report server: stored HTML reports and nothing else; and where report links point."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from demo.ui import serve_reports
from orchestration.deployments import DeploymentError, local
from tests.browser.conftest import free_port
from tests.conftest import REPO


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "store"
    (root / "monitoring" / "drift").mkdir(parents=True)
    (root / "monitoring" / "drift" / "2026-10-01.html").write_text("<html>report</html>")
    (root / "monitoring" / "drift" / "evidently-0.7.js").write_text("var shared")
    (root / "models").mkdir()
    (root / "models" / "model.txt").write_text("tree")
    (tmp_path / "secret.html").write_text("<html>outside</html>")
    (root / "escape.html").symlink_to(tmp_path / "secret.html")
    port = free_port()
    server = serve_reports(root, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_serves_stored_html_reports_only(served):
    assert status(f"{served}/monitoring/drift/2026-10-01.html") == (200, "<html>report</html>")
    assert status(f"{served}/monitoring/drift/2026-10-01.html?x=1")[0] == 200
    assert status(f"{served}/monitoring/drift/evidently-0.7.js") == (200, "var shared")  # the pages' script
    assert status(f"{served}/models/model.txt")[0] == 404  # other artifacts are not served
    assert status(f"{served}/monitoring/drift/")[0] == 404  # no listings
    assert status(f"{served}/")[0] == 404
    assert status(f"{served}/monitoring/drift/missing.html")[0] == 404
    assert status(f"{served}/../secret.html")[0] == 404
    assert status(f"{served}/escape.html")[0] == 404  # a link out of the store is not followed


def test_a_nul_or_an_unencodable_name_is_a_clean_404(served, capfd):
    for path in ("/monitoring/drift/%00.html", "/%00", "/monitoring/drift/2026-10-01.html%00.html", "/%ff%fe.html"):
        assert status(f"{served}{path}")[0] == 404, path
    assert status(f"{served}/monitoring/drift/2026-10-01.html")[0] == 200  # the server still serves
    assert "Traceback" not in capfd.readouterr().err


def test_report_links_point_where_make_ui_serves(tmp_path):
    assert local(tmp_path, environ={})["storage"].web_url == "http://127.0.0.1:3001"
    storage = local(tmp_path, environ={"KEEL_REPORTS_URL": "http://127.0.0.1:4001/"})["storage"]
    assert (
        storage.browser_url(storage.uri("monitoring", "drift", "d.html"))
        == "http://127.0.0.1:4001/monitoring/drift/d.html"
    )
    with pytest.raises(DeploymentError, match="KEEL_REPORTS_URL='127.0.0.1:4001' must be an http"):
        local(tmp_path, environ={"KEEL_REPORTS_URL": "127.0.0.1:4001"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_make_ui_leaves_no_dagster_dev_behind(tmp_path):
    """SIGKILL of `python -m demo.ui` cannot pass a signal on: dagster dev is told by the kernel instead."""
    import psutil

    ports = [socket.socket() for _ in range(2)]
    for s in ports:
        s.bind(("127.0.0.1", 0))
    ui_port, reports_port = (s.getsockname()[1] for s in ports)
    for s in ports:
        s.close()
    home = tmp_path / "dagster"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "demo.ui", "--port", str(ui_port), "--reports-port", str(reports_port)]
    launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = psutil.Process(launcher.pid).children(recursive=True)
            if any("dev" in c.cmdline() for c in started) and len(started) > 1:
                break  # dagster dev and what it started
            time.sleep(0.5)
        dev = [c for c in started if "dev" in c.cmdline()]
        assert dev, "demo.ui did not start dagster dev"
        launcher.kill()
        launcher.wait()
        gone, _ = psutil.wait_procs(dev, timeout=120)
        assert gone, "dagster dev outlived its killed launcher"
    finally:
        launcher.kill()
        for process in started:  # whatever is left of this test's processes
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_a_request_line_without_a_version_gets_the_page_with_its_headers_never_bare(served):
    """A request line without a version is HTTP/0.9 to http.server, which answers with the bare file: a page
    without its Content-Security-Policy."""
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /monitoring/drift/2026-10-01.html\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), answer[:80]
    assert b"Content-Security-Policy: default-src 'none'" in head
    assert body == b"<html>report</html>"
