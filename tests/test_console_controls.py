"""Issue 18 §6 and §7: the console's controls do what they show. A batch size set there is a ceiling the
adaptive sizer stays under, and the card says what the size really is; a pacing target set while paused is still
the target after the shard starts again."""

from __future__ import annotations

from airmigrate import control, state
from airmigrate.console import actions, data
from airmigrate.db import connect
from airmigrate.pacing import Pacer
from airmigrate.spec import Throttle
from airmigrate.stages.backfill.tuning import BatchSizer
from test_console import FRAGILE, fragile  # noqa: F401 (the fixture)


def test_the_adaptive_sizer_stays_under_the_consoles_batch_size():
    sizer = BatchSizer(1000, target_seconds=1.0, minimum=100, maximum=2_000_000)
    sizer.asked = sizer.size = 1000  # what _controlled does when the console sets 1,000
    sizes = [sizer.observe(sizer.size, 0.01) for _ in range(10)]  # fast batches: it would grow x1.5 each time
    assert max(sizes) == 1000, sizes
    sizer.observe(1000, 50.0)  # a 5x overshoot still cuts
    assert sizer.size == 100
    again = [sizer.observe(sizer.size, 0.01) for _ in range(20)]
    assert again[-1] == 1000 and max(again) == 1000  # grows back, never past the ceiling
    free = BatchSizer(1000, target_seconds=1.0, minimum=100, maximum=2_000_000)
    assert [free.observe(free.size, 0.01) for _ in range(4)] == [1500, 2250, 3375, 5062]  # unset: adaptive


def test_the_card_says_what_the_batch_size_really_is(fragile, fresh_db):  # noqa: F811
    migration, run_id = fragile  # adaptive: false, 5,000-row batches
    [entry] = data.overview()
    assert entry["throttle"]["batch_size_text"] == "5,000 rows"
    actions.perform(fresh_db, FRAGILE, "batch_size", "erin", "2000")
    [entry] = data.overview()
    assert entry["throttle"]["batch_size"] == 2000
    assert entry["throttle"]["batch_size_text"] == "at most 2,000 rows (set from the console)"
    with connect(fresh_db, autocommit=True) as conn:
        card = data.batch_size_card(conn, None, run_id, None)  # an adaptive migration, nothing set
    assert card["batch_size_text"].startswith("adaptive, started at 5,000, now about 2,000 rows")


def test_a_pacing_target_set_while_paused_survives_the_shard_starting_again(fragile, fresh_db):  # noqa: F811
    migration, run_id = fragile
    with Pacer(fresh_db, run_id, Throttle(), 1, 1.5):  # the shard, as triggered (app_latency_ratio 1.5)
        pass
    with connect(fresh_db, autocommit=True) as conn:
        control.act(conn, FRAGILE, "pause", "frank")
        control.act(conn, FRAGILE, "app_latency_ratio", "frank", 3.0)
        control.act(conn, FRAGILE, "resume", "frank")
    with Pacer(fresh_db, run_id, Throttle(), 1, 1.5):  # resumed: the shard starts again with the trigger's 1.5
        pass
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT target_ratio FROM airmigrate.pacing WHERE run_id = %s",
                            (run_id,)).fetchone()[0] == 3.0
    [entry] = data.overview()
    assert entry["throttle"]["pacing"]["target_ratio"] == 3.0
    with connect(fresh_db) as conn:
        assert state.latest_run(conn, FRAGILE)["status"] == "running"
