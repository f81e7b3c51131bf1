"""The instance settings in orchestration/dagster.yaml, as a DagsterInstance loads them."""

from __future__ import annotations

import dagster as dg
from dagster._core.instance.config import PoolGranularity

from assets.registered_model import registered_model
from orchestration.promotion import approve, approve_challenger, rollback, rollback_champion
from resources.registry import ALIAS_POOL
from tests.conftest import write_dagster_home


def test_run_monitoring_is_on_so_killed_runs_do_not_stay_started(tmp_path):
    with dg.DagsterInstance.from_config(str(write_dagster_home(tmp_path / "home"))) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 6 * 3600
        assert instance.run_monitoring_settings["poll_interval_seconds"] == 60
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60


def test_every_alias_move_is_in_one_pool_of_one(tmp_path):
    with dg.DagsterInstance.from_config(str(write_dagster_home(tmp_path / "home"))) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity == PoolGranularity.OP
        assert instance.event_log_storage.supports_global_concurrency_limits
    # Each takes the pool's slot itself (resources/alias_slot.py) and says so in its tags.
    for step in (registered_model.op, approve_challenger, rollback_champion):
        assert step.tags["keel/pool"] == ALIAS_POOL
    # A stuck promotion is failed by run monitoring long before the instance-wide limit, freeing the pool.
    assert approve.tags["dagster/max_runtime"] == rollback.tags["dagster/max_runtime"] == "900"
