"""A seeded simulation of a mini-program shop's users and events, as numpy columns.

Shape: signups grow over time (a third of users signed up before the window); order frequency
and spend are heavy-tailed (log-normal rates, a third of users never buy); a quarter of users
churn at some point and stop, a sixth are dormant (almost no activity); every timestamp follows
a weekly and daily rhythm (lunch and evening peaks, busier weekends, quiet nights). Carts are
added before most orders and abandoned at other times; check-ins come in streaks; shares, an
invited friend's first order, price drops on carted items, store geofence visits, coupons used
and subscription-message authorisations (one per accepted template) complete the picture.

Everything is drawn from one `numpy.random.Generator(PCG64(seed))` in a fixed order, so the
same arguments give the same columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import NDArray

DAY = 86_400_000_000
HOUR = 3_600_000_000
MINUTE = 60_000_000
LOCAL_OFFSET = 8 * HOUR  # generated timestamps are written in +08:00 (Asia/Shanghai)

# Event type codes (index into TYPES).
TYPES = ("order_paid", "order_shipped", "cart_add", "checkin", "share", "invitee_first_order",
         "subscribe_authorized", "price_drop", "enter_geofence", "coupon_used")
(ORDER, SHIPPED, CART, CHECKIN, SHARE, INVITEE, SUBSCRIBE, PRICE_DROP, GEOFENCE,
 COUPON_USED) = range(len(TYPES))
TEMPLATES = ("coupon_arrival", "cart_reminder", "coupon_expiring", "points_expiring",
             "price_drop", "order_paid", "order_shipped", "checkin_reward")

# Relative activity by hour of the local day, and weekday factors (Monday first).
_HOURLY = np.array([0.25, 0.12, 0.06, 0.04, 0.04, 0.08, 0.2, 0.45, 0.7, 0.8, 0.9, 1.0,
                    1.35, 1.25, 0.9, 0.85, 0.85, 0.95, 1.1, 1.3, 1.55, 1.6, 1.3, 0.7])
_WEEKDAY = np.array([0.92, 0.9, 0.93, 0.97, 1.08, 1.22, 1.15])
_WEEK = (_WEEKDAY[:, None] * _HOURLY[None, :]).ravel()
_WEEK_ACCEPT = _WEEK / _WEEK.max()

I64 = NDArray[np.int64]
Add = Callable[..., None]  # add(ts, user, type, amount=None, p1=None, p2=None, p3=None)


@dataclass
class Users:
    n: int
    signup: I64          # micros UTC
    active_from: I64     # max(signup, window start)
    active_to: I64       # churn time or end
    buy_rate: NDArray[np.float64]   # orders per day while active
    engagement: NDArray[np.float64]  # multiplier for non-order activity
    spend: NDArray[np.float64]      # typical order value, yuan
    checker: NDArray[np.bool_]
    local: NDArray[np.bool_]


@dataclass
class Events:
    """Columns, one row per event; p1/p2/p3 mean different things per type (see write.py)."""

    ts: I64
    user: NDArray[np.int32]
    type: NDArray[np.int8]
    amount: NDArray[np.int32]   # fen, -1 when none
    p1: NDArray[np.int32]
    p2: NDArray[np.int32]
    p3: NDArray[np.int32]


def week_slot(ts: I64) -> I64:
    """Hour of the local week (0 = Monday 00:00) of UTC micros."""
    local = ts + LOCAL_OFFSET
    days = local // DAY
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return (weekday * 24 + (local % DAY) // HOUR).astype(np.int64)


def seasonal_times(rng: np.random.Generator, lo: I64, hi: I64) -> I64:
    """One time per (lo, hi) interval, uniform then thinned by the weekly rhythm."""
    n = lo.shape[0]
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    span = np.maximum(hi - lo, 1).astype(np.float64)
    while todo.size:
        t = lo[todo] + (rng.random(todo.size) * span[todo]).astype(np.int64)
        ok = rng.random(todo.size) < _WEEK_ACCEPT[week_slot(t)]
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return out


def simulate_users(rng: np.random.Generator, n: int, start: int, end: int) -> Users:
    window = end - start
    before = rng.random(n) < 0.33
    growth = rng.random(n) ** (1 / 1.7)  # more signups lately
    signup = np.where(before, start - (rng.random(n) * 365 * DAY).astype(np.int64),
                      start + (growth * window).astype(np.int64)).astype(np.int64)
    active_from = np.maximum(signup, start)
    churned = rng.random(n) < 0.25
    churn_at = active_from + (rng.random(n) ** 1.5 * (end - active_from)).astype(np.int64)
    active_to = np.where(churned, churn_at, end).astype(np.int64)
    dormant = rng.random(n) < 0.16
    buyer = rng.random(n) >= 0.33
    buy_rate = np.where(buyer, rng.lognormal(np.log(1 / 38), 1.0, n), 0.0)
    engagement = rng.lognormal(0.0, 0.8, n) * np.where(dormant, 0.03, 1.0)
    buy_rate = buy_rate * np.where(dormant, 0.05, 1.0)
    spend = rng.lognormal(np.log(55), 0.65, n)
    checker = rng.random(n) < 0.22
    local = rng.random(n) < 0.2
    return Users(n, signup, active_from, active_to, buy_rate, engagement, spend, checker, local)


def _expand(rng: np.random.Generator, users: Users, rate: NDArray[np.float64]) -> I64:
    """Poisson counts over each user's active days -> the user index of every draw."""
    days = np.maximum(users.active_to - users.active_from, 0) / DAY
    counts = rng.poisson(np.minimum(rate * days, 400.0))
    return np.repeat(np.arange(users.n, dtype=np.int64), counts)


def simulate_events(rng: np.random.Generator, users: Users, start: int, end: int) -> Events:
    cols: list[list[NDArray[np.generic]]] = [[] for _ in range(7)]
    dtypes = (np.int64, np.int32, np.int8, np.int32, np.int32, np.int32, np.int32)

    def add(ts: I64, u: I64, typ: int, amount: I64 | None = None, p1: I64 | None = None,
            p2: I64 | None = None, p3: I64 | None = None) -> None:
        keep = (ts >= start) & (ts < end)
        n = int(keep.sum())
        values = (ts, u, None, amount, p1, p2, p3)
        for k, (col, dtype) in enumerate(zip(values, dtypes)):
            if k == 2:
                cols[k].append(np.full(n, typ, dtype=dtype))
            elif col is None:
                cols[k].append(np.full(n, -1 if k == 3 else 0, dtype=dtype))
            else:
                cols[k].append(col[keep].astype(dtype))

    # Each section is a function so that its temporary columns are freed when it returns.
    for section in (_orders, _carts, _checkins, _shares, _geofences, _authorisations):
        section(rng, users, add)

    ts = np.concatenate(cols[0]) if cols[0] else np.empty(0, dtype=np.int64)
    cols[0] = []
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    out: list[NDArray[np.generic]] = []
    for k in range(1, 7):
        column = np.concatenate(cols[k]) if cols[k] else np.empty(0, dtype=dtypes[k])
        cols[k] = []
        out.append(column[order])
        del column
    return Events(ts, *out)  # type: ignore[arg-type]


def _orders(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Orders: heavy-tailed rates and spend; order ids are their index.
    ou = _expand(rng, users, users.buy_rate)
    ots = seasonal_times(rng, users.active_from[ou], users.active_to[ou])
    yuan = users.spend[ou] * rng.lognormal(0.0, 0.45, ou.size)
    amount = np.maximum(100, np.round(yuan * 10).astype(np.int64) * 10)
    items = 1 + rng.poisson(0.8, ou.size)
    oid = np.arange(ou.size, dtype=np.int64)
    add(ots, ou, ORDER, amount, items, oid)
    ship = rng.random(ou.size) < 0.93
    sts = ots + HOUR * 2 + (rng.random(ou.size) * 46 * HOUR).astype(np.int64)
    carrier = rng.integers(0, 4, ou.size)
    add(sts[ship], ou[ship], SHIPPED, None, oid[ship], carrier[ship])
    item_of_order = _items(rng, ou.size)
    carted = rng.random(ou.size) < 0.65
    cts = ots - (rng.exponential(40, ou.size) * MINUTE).astype(np.int64) - MINUTE
    add(cts[carted], ou[carted], CART, None, item_of_order[carted])
    coupon = rng.random(ou.size) < 0.18
    add(ots[coupon] + 1_000_000, ou[coupon], COUPON_USED, None, oid[coupon])
    auth_paid = rng.random(ou.size) < 0.45
    add(ots[auth_paid] + 2_000_000, ou[auth_paid], SUBSCRIBE, None,
        np.full(int(auth_paid.sum()), TEMPLATES.index("order_paid"), dtype=np.int64))
    auth_ship = rng.random(ou.size) < 0.3
    add(ots[auth_ship] + 3_000_000, ou[auth_ship], SUBSCRIBE, None,
        np.full(int(auth_ship.sum()), TEMPLATES.index("order_shipped"), dtype=np.int64))



def _carts(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Abandoned carts: more for buyers, some for everyone engaged.
    au = _expand(rng, users, (0.4 * users.buy_rate + 0.01) * users.engagement)
    ats = seasonal_times(rng, users.active_from[au], users.active_to[au])
    aitem = _items(rng, au.size)
    add(ats, au, CART, None, aitem)
    remind = rng.random(au.size) < 0.2
    add(ats[remind] + 5_000_000, au[remind], SUBSCRIBE, None,
        np.full(int(remind.sum()), TEMPLATES.index("cart_reminder"), dtype=np.int64))
    # Price drops on some carted items, days later.
    drop = rng.random(au.size) < 0.12
    dts = ats[drop] + DAY + (rng.random(int(drop.sum())) * 9 * DAY).astype(np.int64)
    old = 1000 + (rng.pareto(1.5, int(drop.sum())) * 3000).astype(np.int64) * 10
    new = (old * rng.uniform(0.6, 0.95, old.size)).astype(np.int64) // 10 * 10
    add(dts, au[drop], PRICE_DROP, None, aitem[drop], new, old)



def _checkins(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Check-ins in streaks: streak starts by day, lengths geometric (mean 5 days).
    su = _expand(rng, users, np.where(users.checker, 0.045, 0.0) * np.minimum(
        users.engagement, 3.0))
    first_day = (users.active_from[su] + LOCAL_OFFSET) // DAY
    last_day = (users.active_to[su] + LOCAL_OFFSET) // DAY
    sday = first_day + (rng.random(su.size) * np.maximum(last_day - first_day, 1)).astype(
        np.int64)
    slen = np.minimum(rng.geometric(0.2, su.size), 60)
    cu = np.repeat(su, slen)
    offs = np.arange(cu.size, dtype=np.int64) - np.repeat(np.cumsum(slen) - slen, slen)
    cday = np.repeat(sday, slen) + offs
    minute = np.clip(rng.normal(9.5 * 60, 150, cu.size), 0, 24 * 60 - 1).astype(np.int64)
    cts = cday * DAY - LOCAL_OFFSET + minute * MINUTE + rng.integers(0, 60, cu.size) * 1_000_000
    inside = cts < users.active_to[cu]
    add(cts[inside], cu[inside], CHECKIN)
    reward = inside & (rng.random(cu.size) < 0.1)
    add(cts[reward] + 1_000_000, cu[reward], SUBSCRIBE, None,
        np.full(int(reward.sum()), TEMPLATES.index("checkin_reward"), dtype=np.int64))



def _shares(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Shares, and the invited friend's first order for some of them.
    hu = _expand(rng, users, 0.012 * users.engagement)
    hts = seasonal_times(rng, users.active_from[hu], users.active_to[hu])
    target = rng.choice(3, hu.size, p=[0.55, 0.33, 0.12])
    add(hts, hu, SHARE, None, target)
    inv = rng.random(hu.size) < 0.08
    add(hts[inv] + HOUR + (rng.random(int(inv.sum())) * 3 * DAY).astype(np.int64), hu[inv],
        INVITEE)



def _geofences(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Store geofences for users who live near a store.
    gu = _expand(rng, users, np.where(users.local, 0.03, 0.0) * users.engagement)
    gts = seasonal_times(rng, users.active_from[gu], users.active_to[gu])
    add(gts, gu, GEOFENCE, None, rng.integers(0, 40, gu.size))



def _authorisations(rng: np.random.Generator, users: Users, add: Add) -> None:
    # Subscription authorisations for marketing templates, at random active moments.
    for name, rate in (("coupon_arrival", 0.008), ("coupon_expiring", 0.004),
                       ("points_expiring", 0.003), ("price_drop", 0.003)):
        tu = _expand(rng, users, rate * np.minimum(users.engagement, 4.0))
        tts = seasonal_times(rng, users.active_from[tu], users.active_to[tu])
        add(tts, tu, SUBSCRIBE, None, np.full(tu.size, TEMPLATES.index(name), dtype=np.int64))



def _items(rng: np.random.Generator, n: int) -> I64:
    """Item numbers with a long tail of popularity."""
    return (np.minimum(rng.pareto(1.1, n) * 40, 4999)).astype(np.int64)
