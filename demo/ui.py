"""`make ui`: the Dagster UI (`dagster dev -w workspace.yaml`) over $DAGSTER_HOME, with the stored HTML
reports served beside it.

Dagster's webserver serves no files of ours, so the Evidently reports that `drift_report` links to
(metadata `report_url`) are served by a small read-only server on a second loopback port: `.html`
files under the local artifact store and the `.js` script the drift reports share, and nothing else (no listings, no models, no data). The runs
launched from the UI are told where it serves (KEEL_REPORTS_URL), so their links point at it. With a
cloud store there is nothing to serve: its links go to the cloud console.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ml import io
from orchestration.deployments import PROJECT_ROOT, REPORTS_URL_VARIABLE, resources_for

PR_SET_PDEATHSIG = 1  # linux/prctl.h

# The reports carry their styles, font, plots and images inline; a drift page loads Evidently's script from
# beside it (one shared file): a page may run that script and its own inline one, and fetch or send nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ReportHandler(http.server.SimpleHTTPRequestHandler):
    """GET and HEAD of existing .html and .js files under `directory`; anything else is a 404. Every answer
    carries a Content-Security-Policy that keeps a page from loading or sending anything."""

    # A request line without a version is HTTP/0.9 to http.server, answered with the bare file and no headers
    # (no Content-Security-Policy): answer it as HTTP/1.0, with every header.
    default_request_version = "HTTP/1.0"

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def send_head(self):
        root = Path(self.directory).resolve()
        try:
            path = Path(self.translate_path(self.path)).resolve()  # translate_path drops '..' and the query
            # The reports and the script their pages share (Evidently's bundle, written beside them).
            served = path.suffix in (".html", ".js") and path.is_file() and root in path.parents
        except (ValueError, OSError):  # a %00 (embedded NUL) or a name the file system refuses
            served = False
        if not served:
            self.send_error(404, "Only the stored HTML reports are served here")
            return None
        return super().send_head()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # dagster dev's log is the one to read


def serve_reports(root: Path, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """Start serving `root`'s HTML files on host:port in a background thread."""
    root.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer((host, port), functools.partial(ReportHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, name="reports", daemon=True).start()
    return server


def _stop_with(parent: int):
    """For Popen's preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL (Linux), so a
    killed `make ui` leaves no dagster dev behind holding the UI's port without the report server."""

    def arrange() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address of both servers (default: loopback only)")
    parser.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
    parser.add_argument("--reports-port", type=int, default=3001, help="the HTML reports' port")
    args = parser.parse_args(argv)

    # A shell starts background jobs with SIGINT ignored, and dagster dev would inherit that and then
    # ignore SIGTERM as well (it maps SIGTERM to its SIGINT handler): give it Python's usual handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    store = resources_for()["storage"]
    env = dict(os.environ)
    server = None
    if not io.is_remote(store.root):
        try:
            server = serve_reports(Path(store.root), args.host, args.reports_port)
        except OSError as error:
            print(f"Cannot serve the reports on {args.host}:{args.reports_port} ({error}); pick --reports-port")
            return 2
        env[REPORTS_URL_VARIABLE] = f"http://{args.host}:{args.reports_port}"
        print(f"Stored HTML reports (drift_report's report_url) on {env[REPORTS_URL_VARIABLE]}", flush=True)
    command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)]
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, preexec_fn=_stop_with(os.getpid()))
    # `kill` (SIGTERM) of this process is passed on: dagster dev then stops its webserver, daemon and code server.
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached dagster dev too (one process group): wait until it has stopped
        return child.wait()
    finally:
        if server is not None:
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
