"""Screenshots of every console page at desktop and phone widths, for docs/console.md.

Run by hand from the repository root (not by CI; it needs chromium and Playwright, as
the browser tests do)::

    python -m tests.browser.screenshots            # writes docs/images/console-*.png

It starts a daemon on a temporary home with the example agents (examples/corral.toml),
the deployer (whose deploy waits for approval) and a scripted model server standing in
for ``[models.default]``, makes a few runs, and photographs each page in light mode at
1280x800 and in dark mode at a phone's 390x844. With ``pngquant`` on PATH the images are
reduced to 64 colours, which keeps each to a few tens of KB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from corral.console.links import Links, load_key
from tests.browser.site import ROOT, chromium_path, example_project
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import KEY, KEY_VAR, fake_model

SIZES = {"desktop": ({"width": 1280, "height": 800}, "light"), "phone": ({"width": 390, "height": 844}, "dark")}


def _runs(project: object, model: FakeServer) -> dict[str, str]:
    """A few runs of the example agents, one held for approval; the ids to photograph."""
    cli = project.cli_json  # type: ignore[attr-defined]
    for _ in range(3):
        cli("run", "counter", "--wait")
    model.enqueue(*(Reply(body=openai_body("Durable agents resume where they stopped.")) for _ in range(4)))
    digest = cli("run", "digest", "--wait")["id"]
    cli("run", "summarize", "--wait")
    cli("run", "summarize", "--wait")
    held = cli("run", "deployer", "--input", json.dumps("production"))["id"]
    project.wait_for_run(held, states=("on_hold",))  # type: ignore[attr-defined]
    return {"digest": digest, "held": held}


def _link_page(browser: Any, project: Any, held: str, viewport: Any, scheme: str, shot: Path) -> None:
    """The page a signed approval link opens, in a fresh context (a phone: no session)."""
    [request] = [a for a in project.cli_json("approvals") if a["run_id"] == held]
    base = project.cli_json("console")["url"]
    link = Links(load_key(project.home), base).url(request["id"], request["expires"])
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    page.goto(link)
    page.screenshot(path=str(shot))
    _shrink(shot)
    print(f"{shot}  {shot.stat().st_size // 1024} KiB")
    context.close()


def _shrink(path: Path) -> None:
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--ext", ".png", "64", str(path)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNGs")
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no chromium on PATH: run `sh tests/browser/install_chromium.sh` as root")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ[KEY_VAR] = KEY
    model = FakeServer().start()
    with tempfile.TemporaryDirectory() as tmp:
        project = example_project(Path(tmp), model.url, {})
        project.models["default"] = fake_model(model.url)
        project.agents["counter"]["every"] = "1h"  # still life: no run starts while photographed
        project.agents["digest"]["every"] = "1h"
        try:
            project.start_daemon()
            made = _runs(project, model)
            pages = {
                "overview": "/",
                "runs": "/runs",
                "run": f"/runs/{made['digest']}",
                "agent": "/agents/summarize",
                "approvals": "/approvals",
                "spend": "/spend",
                "alerts": "/alerts?days=1",
            }
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable)
                for size, (viewport, scheme) in SIZES.items():
                    context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
                    page = context.new_page()
                    page.goto(project.cli_json("console")["login"])
                    url = page.url.rstrip("/")
                    for name, path in pages.items():
                        page.goto(url + path)
                        page.locator("#live-state.on").wait_for(timeout=10_000)
                        shot = args.out / f"console-{name}-{size}.png"
                        page.screenshot(path=str(shot))
                        _shrink(shot)
                        print(f"{shot}  {shot.stat().st_size // 1024} KiB")
                    context.close()
                    _link_page(browser, project, made["held"], viewport, scheme, args.out / f"console-link-{size}.png")
                browser.close()
        finally:
            project.close()
            model.stop()


if __name__ == "__main__":
    main()
