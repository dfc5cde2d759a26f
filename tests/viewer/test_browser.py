"""The viewer in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

On a real detect output folder (conftest.py): the markers drawn are the detections of the
CSV, the threshold slider redraws them and the count follows, a click marks a detection and
the saved GeoJSON says so, the gallery's keys mark one, a click in add mode adds a missed
one, and reopening the page shows the saved state. A screenshot is written (with
``MITODET_SCREENSHOT=path`` to that path: ``docs/images/viewer.png`` comes from here).

Skipped, with the reason, where Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NAME = "CMU-1-Small-Region"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as the machine notes prescribe for a closed network: no background connections, no sandbox as root
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: apt-get install chromium (scripts/install_browser.sh; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no Playwright: pip install playwright (in mitodet's dev extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def server(fresh_out):
    from werkzeug.serving import make_server

    from mitodet.viewer.app import create_app

    srv = make_server("127.0.0.1", 0, create_app(fresh_out), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _saved(out: Path) -> list[dict]:
    doc = json.loads((out / f"{NAME}.reviewed.geojson").read_text())
    return [
        {
            "xy": f["geometry"]["coordinates"],
            "cls": f["properties"]["classification"]["name"],
            **f["properties"]["mitodet"],
        }
        for f in doc["features"]
    ]


def _wait_saved(page, n: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.saved || 0) >= {n}", timeout=15000)


def test_review_in_a_real_browser(browser, server, fresh_out, tmp_path):
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))

    # the list: the case and the image, with detect's numbers
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    summary = json.loads((fresh_out / f"{NAME}.summary.json").read_text())
    assert "case-A" in page.inner_text("#cases") and NAME in page.inner_text("#images")

    page.click(f"text={NAME}")
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    dets = _rows(fresh_out / f"{NAME}.csv")
    cands = json.loads(page.evaluate(f"fetch('/api/images/{NAME}/candidates').then(r => r.text())"))["points"]
    drawn = page.evaluate("mitodetView.drawn().filter(d => d.kind === 'det').map(d => d.i)")
    # the markers drawn are the detections of the CSV, point for point
    assert len(drawn) == len(dets) == summary["count"]
    assert sorted((cands[i][0], cands[i][1], cands[i][2]) for i in drawn) == sorted(
        (float(r["x"]), float(r["y"]), float(r["score"])) for r in dets
    )
    assert page.inner_text("#count") == str(summary["count"])
    # ... and really painted: the canvas is opaque on the ring of the first marker, clear away from it
    alpha = """([dx, dy]) => { const c = mitodetView.canvas, p = mitodetView.screen(0), r = devicePixelRatio;
        return c.getContext('2d').getImageData(Math.round((p.x + dx) * r), Math.round((p.y + dy) * r), 1, 1).data[3]; }"""
    assert page.evaluate(alpha, [11, 0]) > 0 and page.evaluate(alpha, [0, 0]) == 0

    # the slider: 60 steps of 0.001 down, the markers and the count follow
    thr = page.locator("#thr")
    thr.focus()
    for _ in range(60):
        thr.press("ArrowLeft")
    t = float(thr.input_value())
    assert t == pytest.approx(summary["score_threshold"] - 0.060, abs=0.0015)
    expect = sum(c[2] >= t for c in cands)
    assert expect > summary["count"]
    page.wait_for_function(f"document.body.dataset.readoutThreshold === '{thr.input_value()}'", timeout=15000)
    assert page.inner_text("#count") == str(expect)
    assert page.evaluate("mitodetView.drawn().filter(d => d.kind === 'det').length") == expect

    # a click on a detection marks it a mitosis, and the file says so at once
    osd = page.locator("#osd").bounding_box()
    p0 = page.evaluate("mitodetView.screen(0)")
    page.mouse.click(osd["x"] + p0["x"], osd["y"] + p0["y"])
    _wait_saved(page, 1)
    saved = _saved(fresh_out)
    x0, y0 = cands[0][:2]
    hit = [p for p in saved if p["xy"] == [x0, y0]]
    assert hit == [{"xy": [x0, y0], "cls": "Mitotic figure", "origin": "model", "reviewed": True}]
    assert sum(p["cls"] == "Mitotic figure" for p in saved) == expect  # the others at the threshold, unreviewed

    # the gallery: select the second tile, 'n' rejects it
    page.locator(".tile[data-i='1']").click()
    page.keyboard.press("n")
    _wait_saved(page, 2)
    x1, y1 = cands[1][:2]
    assert [p["cls"] for p in _saved(fresh_out) if p["xy"] == [x1, y1]] == ["Not mitotic figure"]

    # add mode: a click away from every marker adds a missed mitosis
    page.keyboard.press("a")
    marks = page.evaluate("mitodetView.drawn()")

    def clear(x, y):
        return all(abs(x - osd["x"] - m["x"]) > 30 or abs(y - osd["y"] - m["y"]) > 30 for m in marks)

    spot = next(
        (x, y)
        for y in range(int(osd["y"] + 120), int(osd["y"] + osd["height"] - 120), 17)
        for x in range(int(osd["x"] + osd["width"] * 0.35), int(osd["x"] + osd["width"] * 0.65), 13)
        if clear(x, y)
    )
    page.mouse.click(*spot)
    _wait_saved(page, 3)
    assert [p["origin"] for p in _saved(fresh_out)].count("added") == 1
    assert len(page.evaluate("mitodetView.state().added")) == 1

    shot = Path(os.environ.get("MITODET_SCREENSHOT", tmp_path / "viewer.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000

    # reopened: the saved state is shown
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    st = page.evaluate("mitodetView.state()")
    assert (
        st["state"][0] == "mitosis"
        and st["state"][1] == "not_mitosis"
        and st["state"].count("unreviewed") == len(cands) - 2
    )
    assert len(st["added"]) == 1 and st["threshold"] == pytest.approx(t)
    assert page.input_value("#thr") == thr.input_value()
    assert not errors, errors
