"""Drive the real Dagster UI: start `dagster dev`, talk GraphQL, look at pages in headless Chromium.

Used by the end-to-end test and to take the README's screenshots:

    python -m tests.webui screenshots   # after `make demo`; writes docs/screenshots/*.png

`dagster dev` runs in its own session/process group and is stopped by signalling that group (it
ignores SIGINT/SIGTERM when started in the background of a non-interactive shell).
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from cs336_assets.resources import REPO_ROOT, ensure_dagster_home

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATION = "cs336"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """A running `dagster dev` on 127.0.0.1 (webserver + daemon) for the project's workspace."""

    def __init__(self, port: int, process: subprocess.Popen, log_path: Path):
        self.port, self.process, self.log_path = port, process, log_path
        self.url = f"http://127.0.0.1:{port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.url}/graphql", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"query": query, "variables": variables or {}}).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_materialization(self, asset_names: list[str], run_config: dict | None = None,
                               partition: str | None = None) -> str:
        """Launch a run materializing `asset_names` through GraphQL's launchRun; returns the run id."""
        params = {"selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                               "jobName": "__ASSET_JOB", "assetSelection": [{"path": [n]} for n in asset_names]},
                  "runConfigData": run_config or {}}
        if partition:
            params["executionMetadata"] = {"tags": [{"key": "dagster/partition", "value": partition}]}
        data = self.graphql("""
            mutation Launch($params: ExecutionParams!) {
              launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on PythonError { message }
                ... on InvalidSubsetError { message }
                ... on RunConfigValidationInvalid { errors { message } }
              }
            }""", {"params": params})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {data}")
        return data["run"]["runId"]

    def wait_for_run(self, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.graphql("query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                                  {"id": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def run_events(self, run_id: str) -> list[dict]:
        return self.graphql("""
            query Logs($id: ID!) {
              logsForRun(runId: $id) {
                ... on EventConnection {
                  events { __typename ... on MessageEvent { message }
                           ... on MaterializationEvent { assetKey { path } } }
                }
              }
            }""", {"id": run_id})["logsForRun"]["events"]


@contextlib.contextmanager
def dagster_dev(env: dict[str, str] | None = None, port: int | None = None, log_dir: Path | None = None,
                startup_timeout: float = 180) -> Iterator[DagsterDev]:
    """Start `dagster dev -w workspace.yaml` in its own process group; stop the whole group on exit."""
    env = dict(os.environ if env is None else env)
    port = port or free_port()
    log_path = Path(log_dir or env.get("DAGSTER_HOME", "/tmp")) / f"dagster_dev_{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = DagsterDev(port, process, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dagster dev did not serve {server.url} within {startup_timeout} s")
                time.sleep(0.5)
        yield server
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def chromium_page(width: int = 1600, height: int = 1000):
    """A page in Debian's headless Chromium (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def open_asset_graph(page, server: DagsterDev, expand_groups: bool = True) -> None:
    """The global asset lineage page, with every group expanded so asset names show."""
    page.goto(f"{server.url}/asset-groups", wait_until="domcontentloaded", timeout=120_000)
    page.get_by_text("Global asset lineage").wait_for(timeout=120_000)
    page.get_by_text("corpora", exact=True).first.wait_for(timeout=120_000)
    if expand_groups:  # the graph's "Expand all groups" shortcut (⌥E)
        page.keyboard.press("Alt+e")
        page.get_by_text("stories_tokenizer", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)


def fit_graph(page, names: list[str], margin: int = 30, top: int = 100) -> None:
    """Zoom the asset graph so the nodes named `names` just fit the window below its header (`top`
    px), and centre them: zoom out by the graph's button until all are drawn and inside, then in by
    small ctrl+wheel steps while they still fit."""
    view = page.viewport_size

    def extent():
        found = [page.get_by_text(name, exact=True) for name in names]
        boxes = [node.first.bounding_box() if node.count() else None for node in found]
        if not all(boxes):
            return None
        return (min(b["x"] for b in boxes), min(b["y"] for b in boxes),
                max(b["x"] + b["width"] for b in boxes), max(b["y"] + b["height"] for b in boxes))

    def fits(box) -> bool:
        return box is not None and box[2] - box[0] < view["width"] - 2 * margin and \
            box[3] - box[1] < view["height"] - top - 2 * margin

    def centre(box) -> None:
        dx = view["width"] / 2 - (box[0] + box[2]) / 2
        dy = (view["height"] + top) / 2 - (box[1] + box[3]) / 2
        start = (view["width"] * 0.5, top + 10)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(start[0] + dx, start[1] + dy, steps=15)
        page.mouse.up()
        page.wait_for_timeout(800)

    zoom_out = page.locator("button", has=page.locator('[aria-label="zoom_out"]')).first
    for _ in range(8):
        page.wait_for_timeout(600)
        if fits(extent()):
            break
        zoom_out.click()
    centre(extent())
    page.keyboard.down("Control")
    for _ in range(20):  # finer steps in, undone when the graph no longer fits
        page.mouse.move(view["width"] / 2, (view["height"] + top) / 2)
        page.mouse.wheel(0, -40)
        page.wait_for_timeout(400)
        box = extent()
        if not fits(box):
            page.mouse.wheel(0, 40)
            page.wait_for_timeout(400)
            break
        centre(box)
    page.keyboard.up("Control")
    centre(extent())
    page.wait_for_timeout(1000)


def open_plot_dialog(page, server: DagsterDev, asset: str):
    """`asset`'s "plot" metadata in the UI's Markdown dialog, once its image is drawn; returns the dialog."""
    page.goto(f"{server.url}/assets/{asset}", wait_until="domcontentloaded", timeout=120_000)
    row = page.locator("tr", has=page.get_by_text("plot", exact=True))
    row.get_by_text("Show Markdown").first.click(timeout=120_000)
    dialog = page.locator(".bp5-dialog").first
    image = dialog.locator("img[src^='data:image/png']").first
    image.wait_for(timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30_000)
    page.wait_for_timeout(1000)  # the dialog's opening animation
    return dialog


def take_screenshots(out_dir: Path) -> list[Path]:
    """Screenshots of the asset graph and of a loss-curve plot from the real UI (needs a materialized demo).

    The plot is taken as the UI shows it at a 1280 px window (its Markdown dialog, about 1000 px
    wide), so it stays legible at the README's width; the graph at 1600 px, zoomed to fit.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_dagster_home()
    graph_png, curves_png = out_dir / "asset_graph.png", out_dir / "loss_curves.png"
    with dagster_dev() as server:
        with chromium_page(1280, 1000) as page:
            open_asset_graph(page, server, expand_groups=False)
            page.keyboard.press("Alt+e")  # expand every group (nodes out of view are not drawn: no wait on one)
            page.wait_for_timeout(2000)
            page.get_by_text("Hide navigation").click()
            # Collapse the group tree beside the graph: more room for the graph.
            page.locator("button", has=page.locator('[aria-label="panel_show_right"]')).last.click()
            # Every asset whose name the graph shows whole (long names are shortened with an ellipsis).
            names = server.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
            fit_graph(page, [n["assetKey"]["path"][-1] for n in names if len(n["assetKey"]["path"][-1]) <= 18])
            page.screenshot(path=str(graph_png))
        with chromium_page(1280, 900) as page:
            open_plot_dialog(page, server, "lr_sweep_curves").screenshot(path=str(curves_png))
    return [graph_png, curves_png]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["screenshots"])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    for path in take_screenshots(Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
