"""The canary's share and stickiness over many ids, and the rollout file's checks (no server needed)."""

from __future__ import annotations

import pytest

from serving.routing import CANARY, CHAMPION, bucket, served_arm
from serving.state import RolloutState, RolloutStateError, parse_state, read_state, write_state


@pytest.mark.parametrize("percent", [5.0, 10.0, 50.0])
def test_the_canary_takes_its_share_of_10000_ids_within_3_points(percent):
    state = RolloutState(mode="canary", challenger_version=2, canary_percent=percent)
    share = sum(served_arm(f"request-{n}", state) == CANARY for n in range(10_000)) / 100
    assert abs(share - percent) <= 3


def test_the_same_id_always_meets_the_same_arm_and_off_is_champion_only():
    canary = RolloutState(mode="canary", challenger_version=2, canary_percent=50)
    arms = [served_arm(f"id-{n}", canary) for n in range(200)]
    assert arms == [served_arm(f"id-{n}", canary) for n in range(200)] and set(arms) == {CHAMPION, CANARY}
    assert 0 <= bucket("anything") < 100
    off = RolloutState(mode="off")
    shadow = RolloutState(mode="shadow", challenger_version=2, canary_percent=50)
    assert {served_arm(f"id-{n}", s) for n in range(200) for s in (off, shadow)} == {CHAMPION}


def test_the_rollout_file_round_trips_and_missing_means_off(tmp_path):
    assert read_state(str(tmp_path)).mode == "off"
    state = RolloutState(mode="shadow", challenger_version=3, reason="new candidate", decided_by="bake")
    uri = write_state(str(tmp_path), state)
    assert uri.endswith("serving/rollout.json") and read_state(str(tmp_path)) == state


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"mode": "canary", "canary_percent": 10}, "challenger_version"),
        ({"mode": "canary", "challenger_version": 2, "canary_percent": 120}, "canary_percent"),
        ({"mode": "blue", "challenger_version": 2}, "mode"),
        ({"mode": "off", "since": "2026-12-03T10:00:00"}, "UTC offset"),
        ({"mode": "off", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_rollout_file_is_refused_naming_the_key(document, words):
    with pytest.raises(RolloutStateError, match=words):
        parse_state(document, "rollout.json")


def test_the_serving_settings_are_checked_naming_the_key():
    import yaml

    from ml.params import ParamsError, parse_params
    from tests.serving.project import REPO

    document = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert parse_params(document).serving.poll_seconds > 0
    document["serving"]["port"] = 0
    with pytest.raises(ParamsError, match=r"serving\.port"):
        parse_params(document)


def test_the_registrys_aliases_overrule_the_rollout_file():
    from serving.state import reconcile

    canary = RolloutState(mode="canary", challenger_version=2, canary_percent=10)
    assert reconcile(canary, champion=1, challenger_alias=2) == (canary, None)
    became, why = reconcile(canary, champion=2, challenger_alias=2)
    assert became.mode == "off" and "v2 is the registry's champion" in why and became.since == canary.since
    gone, why = reconcile(canary, champion=1, challenger_alias=None)
    assert gone.mode == "off" and "challenger alias is unset" in why
    assert "challenger alias is v3" in reconcile(canary, champion=1, challenger_alias=3)[1]
    off = RolloutState(mode="off")
    assert reconcile(off, champion=1, challenger_alias=2) == (off, None)  # a challenger awaiting approval
