"""The viewer's web application (Flask): pages, deep-zoom tiles, live read-out, review.

Routes (``NAME`` is an image of the output folder, looked up in the :class:`Catalog`):

==========================================  =================================================
``GET /``                                    cases and images with their counts and scores
``GET /image/NAME``                          one image: zoomable tissue, detections, slider,
                                             layers, gallery, review
``GET /api/catalog``                         the list (JSON), cases recomputed from reviews
``GET /api/images/NAME``                     facts the page needs (size, mpp, layers, GT)
``GET /api/images/NAME/candidates``          every candidate ``[x, y, score]``
``GET /api/images/NAME/readout?threshold=t`` the read-out at ``t`` (``source=reviewed``: of
                                             the saved review), with TP/FP/FN given GT
``GET /dz/NAME.dzi``, ``/dz/NAME_files/...`` deep-zoom tiles (OpenSeadragon's DZI layout)
``GET /api/images/NAME/layer/L``             ``tissue`` (shaded glass) or ``heatmap``
``GET /api/images/NAME/crop/I.jpg``          the gallery crop of candidate ``I``
``GET|POST /api/images/NAME/review``         the saved review / save one (atomically)
``POST /api/readout``                        write the read-out of the reviewed points
==========================================  =================================================

Every error is a JSON ``{"error": ...}`` with a 4xx status (a 500 only for a bug, and then
without a traceback).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from flask import Flask, Response, abort, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from mitodet.viewer.catalog import LAYERS, ImageEntry, NotServable
from mitodet.viewer.review import BadReview, load_review, parse_review, save_review
from mitodet.viewer.state import CROP_UM, Viewer, finite

STATIC = Path(__file__).parent / "static"
CROP_PX = 160
MAX_BODY_BYTES = 32 * 1024 * 1024


def _entry_or_404(v: Viewer, name: str) -> ImageEntry:
    try:
        return v.entry(name)
    except NotServable as exc:
        abort(404, str(exc))


def _threshold_arg(default: float) -> float:
    raw = request.args.get("threshold")
    if raw is None:
        return default
    try:
        t = float(raw)
    except ValueError:
        abort(400, f"threshold must be a number in [0, 1], got {raw!r}")
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        abort(400, f"threshold must be a number in [0, 1], got {raw!r}")
    return t


def create_app(out_dir: str | Path) -> Flask:
    """The Flask app over one detect output folder (raises ValueError when it is not one)."""
    from mitodet.viewer.tiles import TileServer

    v = Viewer(out_dir)
    tiles = TileServer()
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.url_map.merge_slashes = False  # "//etc/passwd" is refused, not redirected to a path of ours
    app.extensions["mitodet_viewer"] = v

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def _bug(exc: Exception):  # never a traceback to the browser
        app.logger.exception("viewer error")
        return jsonify(error=f"internal error: {type(exc).__name__}: {exc}"), 500

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.get("/image/<name>")
    def image_page(name: str):
        _entry_or_404(v, name)
        return send_from_directory(STATIC, "image.html")

    @app.get("/api/catalog")
    def catalog():
        images = [v.entry(n).row() for n in v.catalog.names()]
        return jsonify(finite({"out_dir": str(v.catalog.out_dir), "images": images, "cases": v.cases(reviewed=True)}))

    @app.get("/api/images/<name>")
    def image_info(name: str):
        e = _entry_or_404(v, name)
        s = e.summary
        pts, sc, _ = e.candidates()
        gt = v.ground_truth(e)
        return jsonify(
            finite(
                {
                    "name": e.name,
                    "image": Path(str(s.get("image", ""))).name,
                    "kind": s.get("kind"),
                    "mpp": e.mpp,
                    "width": e.image_shape[1],
                    "height": e.image_shape[0],
                    "threshold": e.threshold,
                    "floor": float(np.nanmin(sc)) if len(sc) else None,
                    "n_candidates": int(len(sc)),
                    "field_area_mm2": s.get("field_area_mm2"),
                    "layers": {k: e.has(suffix) for k, suffix in LAYERS.items() if k != "overlay"},
                    "atypical": s.get("atypical"),
                    "has_gt": gt is not None,
                    "gt_file": (s.get("evaluation") or {}).get("gt_file"),
                    "model": (s.get("model") or {}).get("preset"),
                    "crop_um": CROP_UM,
                    "notes": s.get("notes", []),
                }
            )
        )

    @app.get("/api/images/<name>/candidates")
    def candidates(name: str):
        e = _entry_or_404(v, name)
        pts, sc, atyp = e.candidates()
        a = [None] * len(sc) if atyp is None else atyp.tolist()
        return jsonify(finite({"points": [[x, y, s, p] for (x, y), s, p in zip(pts.tolist(), sc.tolist(), a)]}))

    @app.get("/api/images/<name>/readout")
    def readout(name: str):
        e = _entry_or_404(v, name)
        source = request.args.get("source", "model")
        if source not in ("model", "reviewed"):
            abort(400, f"source must be 'model' or 'reviewed', got {source!r}")
        if source == "reviewed":
            pts = v.reviewed_mitoses(e)
            if pts is None:
                abort(404, f"{e.reviewed_path.name}: no review saved yet")
            return jsonify(finite(v.readout(e, pts, None)))
        t = _threshold_arg(e.threshold)
        allp, alls, _ = e.candidates()
        keep = alls >= t
        pts, sc = allp[keep], alls[keep]
        s = v.readout(e, pts, sc)
        s["score_threshold"] = t
        gt = v.ground_truth(e)
        if gt is not None:
            from mitodet.inference.pipeline import evaluate_points

            gpts, radius_um = gt
            ev, m = evaluate_points(gpts, pts, sc, e.mpp, radius_um)  # what detect --gt computed
            ev["matched"] = [int(i) for i in np.flatnonzero(m.matched_pred)]  # indices among those shown
            ev["missed"] = gpts[~m.matched_gt].tolist()
            s["evaluation"] = ev
        return jsonify(finite(s))

    @app.get("/dz/<name>.dzi")
    def dzi(name: str):
        e = _entry_or_404(v, name)
        try:
            xml = tiles.dzi(e.image_path, e.mpp, v.reader(e))
        except NotServable as exc:
            abort(404, str(exc))
        except (OSError, ValueError) as exc:
            abort(422, f"{e.name}: the image cannot be read for viewing: {exc}")
        return Response(xml, mimetype="application/xml")

    @app.get("/dz/<name>_files/<int:level>/<int:col>_<int:row>.jpeg")
    def tile(name: str, level: int, col: int, row: int):
        e = _entry_or_404(v, name)
        try:
            data = tiles.tile(e.image_path, e.mpp, level, col, row, v.reader(e))
        except NotServable as exc:
            abort(404, str(exc))
        except ValueError as exc:
            abort(404, str(exc))
        except OSError as exc:
            abort(422, f"{e.name}: the image cannot be read for viewing: {exc}")
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/<name>/layer/<layer>")
    def layer(name: str, layer: str):
        from PIL import Image

        e = _entry_or_404(v, name)
        if layer not in LAYERS or layer == "overlay":
            abort(404, f"no layer {layer!r}; layers are tissue and heatmap")
        try:
            path = e.output(LAYERS[layer])
        except NotServable as exc:
            abort(404, str(exc))
        if layer == "heatmap":
            return send_from_directory(e.out_dir, path.name, mimetype="image/jpeg")
        with Image.open(path) as im:
            tissue = np.asarray(im.convert("L")) > 0
        rgba = np.zeros((*tissue.shape, 4), dtype=np.uint8)
        rgba[~tissue] = (40, 60, 140, 110)  # glass (not counted) shaded blue; tissue clear
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
        return Response(buf.getvalue(), mimetype="image/png")

    @app.get("/api/images/<name>/crop/<int:index>.jpg")
    def crop(name: str, index: int):
        e = _entry_or_404(v, name)
        pts, _, _ = e.candidates()
        if not 0 <= index < len(pts):
            abort(404, f"no candidate {index} ({len(pts)} candidates)")
        half = CROP_UM / e.mpp / 2
        x, y = pts[index]
        box = (int(round(x - half)), int(round(y - half)), int(round(x + half)), int(round(y + half)))
        try:
            slide, _ = tiles.get(e.image_path, e.mpp, v.reader(e))
            im = slide.crop(box, CROP_PX)
        except NotServable as exc:
            abort(404, str(exc))
        except (OSError, ValueError) as exc:
            abort(422, f"{e.name}: the image cannot be read: {exc}")
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=88)
        return Response(buf.getvalue(), mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/<name>/review")
    def get_review(name: str):
        e = _entry_or_404(v, name)
        try:
            r = load_review(e.reviewed_path)
        except ValueError as exc:
            abort(409, f"{e.reviewed_path.name} cannot be read ({exc}); fix or delete it")
        return jsonify(finite(r if r is not None else {"threshold": None, "saved": None, "points": None}))

    @app.post("/api/images/<name>/review")
    def post_review(name: str):
        e = _entry_or_404(v, name)
        if (request.content_length or 0) > MAX_BODY_BYTES:
            abort(413, f"the review is over {MAX_BODY_BYTES // 2**20} MB; split the image or review fewer candidates")
        doc = request.get_json(silent=True)
        if doc is None:
            abort(400, "send the review as JSON (Content-Type: application/json)")
        try:
            review = parse_review(doc, e.image_shape)
        except BadReview as exc:
            abort(400, str(exc))
        info = save_review(e.reviewed_path, review, str(e.summary.get("image", e.name)))
        return jsonify({**info, "file": e.reviewed_path.name})

    @app.post("/api/readout")
    def reviewed_readout():
        return jsonify(finite(v.write_reviewed_readout()))

    return app
