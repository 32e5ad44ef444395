"""engine generate: deterministic bytes, ingestible against the example data model, realistic shape."""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

from engine.generate import DEFAULT_END, generate
from engine.resources import example_project
from store_helpers import make_project, run_cli, run_ingest

END = datetime.fromisoformat(DEFAULT_END)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "data"
    generate(out, users=3000, days=60, seed=11, end=END)
    return out


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path: Path, sample: Path) -> None:
    again = tmp_path / "again"
    code, _ = run_cli(["generate", str(again), "--users", "3000", "--days", "60", "--seed",
                       "11"])  # no --end: the fixed default end, never the clock
    assert code == 0
    for name in ("users.jsonl", "events.jsonl", "datamodel.yaml"):
        assert digest(again / name) == digest(sample / name), name
    other = tmp_path / "other"
    generate(other, users=3000, days=60, seed=12, end=END)
    assert digest(other / "events.jsonl") != digest(sample / "events.jsonl")


def test_writes_the_example_datamodel_and_ingests_without_rejects(tmp_path: Path,
                                                                  sample: Path) -> None:
    assert (sample / "datamodel.yaml").read_bytes() == \
        (example_project() / "datamodel.yaml").read_bytes()
    project = make_project(tmp_path / "p")
    users = run_ingest(project, "users", sample / "users.jsonl")
    events = run_ingest(project, "events", sample / "events.jsonl")
    assert users.total("rejected") == 0 and users.total("accepted") == 3000
    assert events.total("rejected") == 0 and events.total("accepted") > 10_000
    assert events.users_created == 0  # every event's user is in users.jsonl


def load_events(sample: Path) -> list[dict]:
    return [json.loads(line) for line in (sample / "events.jsonl").open(encoding="utf-8")]


def test_realistic_shape(sample: Path) -> None:
    users = [json.loads(line) for line in (sample / "users.jsonl").open(encoding="utf-8")]
    events = load_events(sample)
    end = END.timestamp()
    stamps = [datetime.fromisoformat(e["ts"]) for e in events]
    assert all(s.timestamp() < end for s in stamps) and stamps == sorted(stamps)
    by_type = Counter(e["type"] for e in events)
    assert set(by_type) == {"order_paid", "order_shipped", "cart_add", "checkin", "share",
                            "invitee_first_order", "subscribe_authorized", "price_drop",
                            "enter_geofence", "coupon_used"}
    # heavy-tailed orders: the top 10% of buyers place well over 10% of the orders
    orders = Counter(e["user_id"] for e in events if e["type"] == "order_paid")
    counts = sorted(orders.values(), reverse=True)
    assert sum(counts[:len(counts) // 10]) > 0.3 * sum(counts)
    amounts = sorted(e["amount"] for e in events if e["type"] == "order_paid")
    assert amounts[-1] > 5 * amounts[len(amounts) // 2]
    # weekly and daily rhythm: nights are quiet, weekends busier per day than weekdays
    hours = Counter(s.hour for s in stamps)
    assert hours[21] > 4 * hours[4]
    weekday = Counter(s.isoweekday() for s in stamps)
    assert (weekday[6] + weekday[7]) / 2 > sum(weekday[d] for d in range(1, 6)) / 5
    # carts with and without a later order; never-active and churned users exist
    carted = {e["user_id"] for e in events if e["type"] == "cart_add"}
    assert carted - set(orders) and carted & set(orders)
    active = {e["user_id"] for e in events}
    assert len(active) < 0.95 * len(users)
    # check-in streaks of at least 5 consecutive days
    days: dict[str, set[date]] = defaultdict(set)
    for e, s in zip(events, stamps):
        if e["type"] == "checkin":
            days[e["user_id"]].add(s.date())
    assert any(all(d.toordinal() + k in {x.toordinal() for x in ds} for k in range(5))
               for ds in days.values() for d in ds)
    templates = {e["props"]["template"] for e in events if e["type"] == "subscribe_authorized"}
    assert templates == {"coupon_arrival", "cart_reminder", "coupon_expiring", "points_expiring",
                         "price_drop", "order_paid", "order_shipped", "checkin_reward"}
    tiers = Counter(u.get("tier") for u in users)
    assert tiers["silver"] > tiers["gold"] > tiers["black_gold"] > 0 and tiers[None] > 0
    assert sum(1 for u in users if u["tags"]) > len(users) / 2
    assert all(u["openid"].startswith("o") and len(u["openid"]) == 28 for u in users)
    signups = sorted(u["signup_at"] for u in users)
    assert signups[0] < signups[len(signups) // 2] < signups[-1]
    soon = [u for u in users if "points_expire_at" in u
            and (datetime.fromisoformat(u["points_expire_at"]) - END).days < 7]
    assert soon and any("birthday" in u for u in users)


def test_bad_arguments_cannot_run(tmp_path: Path) -> None:
    code, out = run_cli(["generate", str(tmp_path / "x"), "--users", "0"])
    assert code == 2 and "--users" in out
