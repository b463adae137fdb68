"""Session store: shared carbon sources and snapshot reuse."""

from datetime import timedelta

from engine.config import EngineConfig
from engine.policies import POLICIES
from engine.store import MemoSource, SessionStore
from engine.validation import validate_config
from tests.engine.conftest import CONFIG
from tests.engine.fakes import START, FakeSource, fake_factory


def test_snapshot_reused_within_memo():
    source = FakeSource([100.0] * 10)
    memo = MemoSource(source)
    first = memo.snapshot(START, horizon=timedelta(hours=1))
    again = memo.snapshot(START + timedelta(milliseconds=500), horizon=timedelta(hours=1))
    assert again is first
    assert source.calls == 1


def test_snapshot_refreshed_after_memo_or_slot_change():
    source = FakeSource([100.0] * 10, origin=START + timedelta(minutes=29, seconds=59))
    memo = MemoSource(source)
    memo.snapshot(START + timedelta(minutes=29, seconds=59, milliseconds=500), horizon=timedelta(hours=1))
    # Still within the memo second, but source-now has entered the next slot.
    later = memo.snapshot(START + timedelta(minutes=30, milliseconds=100), horizon=timedelta(hours=1))
    assert source.calls == 2
    assert later.slots[0].start == START + timedelta(minutes=30)
    memo.snapshot(START + timedelta(minutes=31), horizon=timedelta(hours=1))
    assert source.calls == 3


def test_sessions_with_same_carbon_fields_share_source():
    built = []

    def factory(target, *, timeout, cache_ttl, settings=None):
        built.append(target)
        return FakeSource()

    store = SessionStore(EngineConfig(source_factory=factory, demand_forecast=False))
    schedule = validate_config(CONFIG, policies=list(POLICIES))
    first = store.configure("default", "one", schedule)
    second = store.configure("default", "two", schedule)
    assert first.source is second.source
    assert built == [""]


def test_store_counts_sessions():
    store = SessionStore(EngineConfig(source_factory=fake_factory(FakeSource()), demand_forecast=False))
    schedule = validate_config(CONFIG, policies=list(POLICIES))
    store.configure("default", "one", schedule)
    store.configure("default", "one", schedule)
    assert len(store) == 1
