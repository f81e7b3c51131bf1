"""The HTTP endpoint: `POST /predict`, `GET /health`, `GET /metadata` (FastAPI on uvicorn).

    POST /predict  {"rows": [{<the spec's columns without the target>, "request_id": "optional"}, ...]}
             200   {"predictions": [{"request_id": ..., "score": 0.27, "model_version": 3}, ...]}
             422   {"error": "row 0: column 'tenure': value 'abc' is not a number", "problems": [...]}
             413   {"error": "... more than serving.limits.max_rows (1000) ..."}: the body or the rows beyond
                   params.yaml serving.limits (a request id beyond its limit is a 422 of its row)
    GET /health    200 once a verified champion is loaded ("ok", or "degraded" with the reasons), else 503
    GET /metadata  the served versions, their manifest sha256, the traffic split and since when

A row's request id is its `request_id`, else the `X-Request-ID` header (`<header>-<row>` in a batch),
else a fresh one; it picks the row's arm (serving/routing.py). Every row is logged once per arm
that scored it (serving/request_log.py). The request path does only what differs per request:
parse JSON, check the rows, hand them to the scorer (serving/scoring.py) and await the scores;
a large body is parsed and checked on a worker thread, so /health never waits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from ml.params import RequestLimits
from ml.spec import DatasetSpec
from serving.models import LoadedModel, ModelPoller, Serving
from serving.request_log import RequestLog
from serving.routing import CANARY, CHAMPION, SHADOW, served_arm
from serving.scoring import Job, Scorer
from serving.validation import REQUEST_ID, LimitError, RequestError, RowValidator, shown

REQUEST_ID_HEADER = "x-request-id"
INLINE_BODY_BYTES = 64 * 1024  # a body up to this size is parsed on the event loop (~100 us); larger ones on a thread


@dataclass(frozen=True)
class ServerParts:
    """What the app runs on: the spec, the model poller, the request log (all built by the caller)."""

    spec: DatasetSpec
    poller: ModelPoller
    request_log: RequestLog
    model_name: str
    limits: RequestLimits = field(default_factory=RequestLimits)


def _json(status: int, document: Any) -> Response:
    return Response(content=orjson.dumps(document), status_code=status, media_type="application/json")


def _header_text(value: str | None) -> str | None:
    """A header as its sender meant it: HTTP hands it over as Latin-1, and clients send text as UTF-8."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8: Latin-1 it is
        return value


def _request_ids(rows: list[Any], header: str | None, max_chars: int) -> list[str]:
    ids = []
    for i, row in enumerate(rows):
        given = row.get(REQUEST_ID) if isinstance(row, dict) else None
        if given:
            # A refused row is still logged: an id beyond the limit only by its start.
            ids.append(given[:max_chars] if isinstance(given, str) else given)
        elif header:
            ids.append(header if len(rows) == 1 else f"{header}-{i}")
        else:
            ids.append(uuid.uuid4().hex)
    return ids


def _model_info(model: LoadedModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    info = {"version": model.version, "manifest_sha256": model.manifest_sha256, "loaded_at": model.loaded_at}
    return info | ({"note": model.note} if model.note else {})


class BodyTooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The request body, read only up to `limit` bytes: a larger one raises BodyTooLarge before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body has no length to check first
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _maybe_off_loop(big: bool, work: Any, *args: Any) -> Any:
    """`work(*args)` on a worker thread when the request is big, else here (a thread hop costs more than small work)."""
    return await asyncio.to_thread(work, *args) if big else work(*args)


def create_app(parts: ServerParts) -> FastAPI:
    limits = parts.limits
    validator = RowValidator(parts.spec, limits)
    poller, request_log = parts.poller, parts.request_log
    scorer: Scorer | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal scorer
        scorer = Scorer()
        # A first load before the port opens, so /health is green as soon as the server answers.
        await asyncio.to_thread(poller.refresh_once)
        poller.start()
        try:
            yield
        finally:
            poller.stop()
            scorer.close()
            request_log.close()

    app = FastAPI(title="Keel real-time scoring", lifespan=lifespan)

    def entries(rows, ids, arm, model, status, scores, served, latency_ms, received):
        for i, row in enumerate(rows):
            yield {
                **(row if isinstance(row, dict) else {}),
                "request_id": ids[i],
                "received_at": received,
                "arm": arm,
                "model_version": model.version,
                "manifest_sha256": model.manifest_sha256,
                "latency_ms": latency_ms,
                "status": status,
                "score": None if scores is None else float(scores[i]),
                "served": served,
            }

    async def score(model: LoadedModel, rows: list[dict[str, Any]]) -> tuple[np.ndarray | None, Any, float]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(scores, error, _started, finished):
            loop.call_soon_threadsafe(future.set_result, (scores, error, finished))

        scorer.submit(Job(model.predictor, rows, done))
        return await future

    def shadow(serving: Serving, rows, ids, received, checked_ms: float) -> None:
        model = serving.challenger

        def done(scores, error, started, finished):
            latency = checked_ms + (finished - started) * 1000  # its own compute, not its wait behind served work
            status = 200 if error is None else 500
            request_log.append(entries(rows, ids, SHADOW, model, status, scores, False, latency, received))

        scorer.submit(Job(model.predictor, rows, done), shadow=True)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        received = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        serving = poller.current
        if serving is None:
            return _json(503, {"error": f"no verified model is loaded yet ({poller.last_error or 'loading'})"})
        try:
            body = await _body(request, limits.max_body_bytes)
        except BodyTooLarge as error:
            return _json(
                413,
                {
                    "error": f"the body ({error.args[0]} bytes, or more) is larger than "
                    f"serving.limits.max_body_bytes ({limits.max_body_bytes})"
                },
            )
        header = _header_text(request.headers.get(REQUEST_ID_HEADER))
        if header is not None and len(header) > limits.max_request_id_chars:
            return _json(
                422,
                {
                    "error": f"the X-Request-ID header ({shown(header)}, {len(header)} characters) is "
                    f"longer than serving.limits.max_request_id_chars ({limits.max_request_id_chars})"
                },
            )
        big = len(body) > INLINE_BODY_BYTES
        try:
            document = await _maybe_off_loop(big, orjson.loads, body)
        except orjson.JSONDecodeError as error:
            return _json(422, {"error": f"the body is not valid JSON: {error}"})
        if not isinstance(document, dict) or "rows" not in document:
            return _json(422, {"error": 'the body must be a JSON object {"rows": [{...}, ...]}'})
        raw_rows = document["rows"]
        try:
            rows = await _maybe_off_loop(big, validator.validate, raw_rows)
        except LimitError as error:  # refused whole, before any row is looked at: nothing to log per row
            return _json(413, {"error": str(error), "problems": [p.to_dict() for p in error.problems]})
        except RequestError as error:
            ids = _request_ids(raw_rows if isinstance(raw_rows, list) else [], header, limits.max_request_id_chars)
            latency = (time.perf_counter() - started) * 1000
            if isinstance(raw_rows, list):
                request_log.append(
                    entries(raw_rows, ids, CHAMPION, serving.champion, 422, None, False, latency, received)
                )
            return _json(422, {"error": str(error), "problems": [p.to_dict() for p in error.problems]})
        checked_ms = (time.perf_counter() - started) * 1000
        ids = _request_ids(rows, header, limits.max_request_id_chars)

        arms = [CHAMPION] * len(rows)
        if serving.mode == "canary":
            arms = [served_arm(i, serving.state) for i in ids]
        by_arm: dict[str, list[int]] = {}
        for i, arm in enumerate(arms):
            by_arm.setdefault(arm, []).append(i)
        models = {CHAMPION: serving.champion, CANARY: serving.challenger}
        results = await asyncio.gather(
            *(score(models[arm], [rows[i] for i in positions]) for arm, positions in by_arm.items())
        )

        predictions: list[dict[str, Any] | None] = [None] * len(rows)
        failure = None
        for (arm, positions), (scores, error, finished) in zip(by_arm.items(), results, strict=True):
            model, latency = models[arm], (finished - started) * 1000
            sub_rows, sub_ids = [rows[i] for i in positions], [ids[i] for i in positions]
            status = 200 if error is None else 500
            request_log.append(entries(sub_rows, sub_ids, arm, model, status, scores, error is None, latency, received))
            if error is not None:
                failure = f"{type(error).__name__}: {error}"
                continue
            for j, i in enumerate(positions):
                predictions[i] = {"request_id": ids[i], "score": float(scores[j]), "model_version": model.version}
        if serving.mode == "shadow":
            shadow(serving, rows, ids, received, checked_ms)
        if failure is not None:
            return _json(500, {"error": f"scoring failed: {failure}"})
        return _json(200, {"predictions": predictions})

    @app.get("/health")
    async def health(strict: bool = False) -> Response:
        """ok: serving what the registry names; degraded: still answering (the last verified models, or the
        champion alone) with the reasons; 503: no verified champion loaded (or degraded, with ?strict=true)."""
        serving, problems = poller.current, poller.problems()
        if serving is None:
            return _json(503, {"status": "unavailable", "error": poller.last_error, "problems": problems})
        # A request log that lost rows is named here, but the server answers as the registry says:
        # ?strict=true keeps it in the rotation (a restart after a shared cause would empty it).
        serving_problems, problems = problems, problems + request_log.problems()
        status = "degraded" if problems else "ok"
        body = {
            "status": status,
            "champion_version": serving.champion.version,
            "challenger_version": serving.challenger.version if serving.challenger else None,
            "mode": serving.mode,
            "reasons": [p["reason"] for p in problems],
            "problems": problems,
        }
        return _json(503 if strict and serving_problems else 200, body)

    @app.get("/metadata")
    async def metadata() -> Response:
        serving = poller.current
        if serving is None:
            return _json(503, {"error": f"no verified model is loaded yet ({poller.last_error or 'loading'})"})
        state = serving.state
        canary = state.canary_percent if serving.mode == "canary" else 0.0
        return _json(
            200,
            {
                "model": parts.model_name,
                "champion": _model_info(serving.champion),
                "challenger": _model_info(serving.challenger),
                "challenger_alias_version": serving.challenger_alias,
                "mode": serving.mode,
                "traffic": {
                    "champion_percent": 100.0 - canary,
                    "canary_percent": canary,
                    "shadow": serving.mode == "shadow",
                },
                "since": state.since.isoformat(),
                "rollout": state.to_dict(),
                "reloads": poller.reloads,
                "last_refresh_error": poller.last_error,
                "problems": poller.problems(),
                "store_replaced": poller.store_replaced[-5:],
                "request_log_errors": request_log.errors[-5:],
                "request_log": request_log.status(),
                "shadow_rows_dropped": scorer.shadow_dropped if scorer else 0,
                "scoring": {"predict_calls": scorer.batches, "rows": scorer.rows} if scorer else None,
            },
        )

    return app
