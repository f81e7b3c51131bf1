"""Canary, shadow and alias moves on the running endpoint: who answers, what is logged, nothing dropped."""

from __future__ import annotations

import datetime as dt
import threading
import time

import httpx
import pytest

from resources.registry import CHALLENGER, CHAMPION
from serving.request_log import read_day
from serving.routing import CANARY, served_arm
from serving.state import RolloutState, write_state


def _rollout(server, mode: str, percent: float = 0.0) -> RolloutState:
    # As start_canary and conclude_rollout do: the registry's challenger alias agrees with the file.
    if mode == "off":
        server.registry.delete_alias(server.model_name, CHALLENGER)
    else:
        server.registry.client().set_registered_model_alias(server.model_name, CHALLENGER, "2")
    state = RolloutState(
        mode=mode,
        challenger_version=None if mode == "off" else 2,
        canary_percent=percent,
        reason=f"test {mode}",
        decided_by="tests",
    )
    write_state(server.store_root, state)
    server.wait_for(lambda m: m["mode"] == mode and m["traffic"]["canary_percent"] == percent, f"switch to {mode}")
    return state


@pytest.fixture
def off_afterwards(server):
    yield
    _rollout(server, "off")


def _logged(server, ids: set[str], timeout: float = 30):
    day = dt.datetime.now(dt.UTC).date()
    deadline = time.monotonic() + timeout
    while True:
        log = read_day(server.store_root, day)
        if len(log) and ids <= set(log["request_id"]):
            return log[log["request_id"].isin(ids)]
        assert time.monotonic() < deadline, "the request log was not written in time"
        time.sleep(0.2)


def test_a_canary_answers_its_share_of_ids_and_the_same_id_meets_the_same_arm(server, records, off_afterwards):
    state = _rollout(server, "canary", 30.0)
    metadata = server.metadata()
    assert metadata["challenger"]["version"] == 2 and metadata["traffic"]["champion_percent"] == 70.0
    ids = [f"canary-{n}" for n in range(400)]
    answered = {}
    for start in range(0, 400, 50):  # batches: each row is routed by its own id
        rows = [{**records[n], "request_id": ids[n]} for n in range(start, start + 50)]
        for p in server.predict(rows).json()["predictions"]:
            answered[p["request_id"]] = p["model_version"]
    expected = {i: 2 if served_arm(i, state) == CANARY else 1 for i in ids}
    assert answered == expected
    assert 0.2 < sum(v == 2 for v in answered.values()) / 400 < 0.4
    again = server.predict([{**records[n], "request_id": ids[n]} for n in range(20)]).json()["predictions"]
    assert [p["model_version"] for p in again] == [expected[ids[n]] for n in range(20)]
    log = _logged(server, set(ids))
    canary = log[log["arm"] == "canary"]
    assert set(canary["request_id"]) == {i for i, v in expected.items() if v == 2}
    assert canary["served"].all() and (canary["model_version"] == 2).all()


def test_a_shadow_is_scored_and_logged_but_never_returned(server, records, off_afterwards):
    champion = server.predict([{**r, "request_id": f"before-{n}"} for n, r in enumerate(records[:30])]).json()
    _rollout(server, "shadow")
    ids = [f"shadow-{n}" for n in range(30)]
    shadowed = server.predict([{**r, "request_id": ids[n]} for n, r in enumerate(records[:30])]).json()
    assert [p["score"] for p in shadowed["predictions"]] == [p["score"] for p in champion["predictions"]]
    assert {p["model_version"] for p in shadowed["predictions"]} == {1}
    deadline = time.monotonic() + 30
    while True:
        log = _logged(server, set(ids))
        if (log["arm"] == "shadow").sum() == 30:
            break
        assert time.monotonic() < deadline, "the shadow's scores were not logged"
        time.sleep(0.2)
    served = log[log["arm"] == "champion"].set_index("request_id")
    shadow = log[log["arm"] == "shadow"].set_index("request_id").loc[served.index]
    assert served["served"].all() and not shadow["served"].any()
    assert (shadow["model_version"] == 2).all() and (shadow["status"] == 200).all()
    assert (served["score"] - shadow["score"]).abs().min() > 1e-6  # a different model's scores
    returned = {p["request_id"]: p["score"] for p in shadowed["predictions"]}
    assert served["score"].to_dict() == returned


def test_a_champion_move_under_load_drops_no_request(server, records):
    results: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = offset
            while not stop.is_set():
                response = client.post(f"{server.url}/predict", json={"rows": [records[n % len(records)]]})
                version = response.json()["predictions"][0]["model_version"] if response.status_code == 200 else None
                results.append((response.status_code, version))
                n += 4

    callers = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for caller in callers:
        caller.start()
    try:
        time.sleep(1.0)
        server.registry.move_alias(server.model_name, CHAMPION, 2, 1, reason="test: reload under load", actor="tests")
        server.wait_for(lambda m: m["champion"]["version"] == 2, "load the new champion")
        time.sleep(1.0)
    finally:
        stop.set()
        for caller in callers:
            caller.join()
        server.registry.move_alias(server.model_name, CHAMPION, 1, 2, reason="test: back", actor="tests")
        server.wait_for(lambda m: m["champion"]["version"] == 1, "load the old champion again")
    assert results and all(status == 200 for status, _ in results), {s for s, _ in results}
    versions = [v for _, v in results]
    assert versions[0] == 1 and versions[-1] == 2 and set(versions) == {1, 2}


def test_a_rollout_file_that_cannot_be_used_keeps_the_last_good_state(server, records, off_afterwards):
    _rollout(server, "canary", 10.0)
    from ml.io import write_json
    from serving.state import state_uri

    write_json({"mode": "canary", "canary_percent": 10}, state_uri(server.store_root))  # no challenger_version
    metadata = server.wait_for(lambda m: m["problems"], "report the bad rollout file")
    assert "challenger_version" in metadata["problems"][0]["reason"] and metadata["mode"] == "canary"
    assert server.predict(records[:3]).status_code == 200
