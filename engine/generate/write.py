"""Writing simulated users and events as the ingest formats (JSONL), in bounded chunks.

Lines are formatted by hand (every generated string is plain text with no characters JSON
must escape), so the bytes depend only on the simulation: same seed, same bytes.
"""
from __future__ import annotations

from typing import IO, Iterator

import numpy as np
from numpy.typing import NDArray

from .sim import (CART, CHECKIN, COUPON_USED, DAY, GEOFENCE, INVITEE, LOCAL_OFFSET, ORDER,
                  PRICE_DROP, SHARE, SHIPPED, SUBSCRIBE, TEMPLATES, TYPES, Events, Users)

CITIES = ("上海", "北京", "深圳", "广州", "杭州", "成都", "南京", "武汉", "苏州", "西安", "重庆",
          "长沙", "天津", "厦门")
CITY_WEIGHTS = (18, 14, 11, 10, 9, 8, 6, 6, 5, 4, 4, 3, 1, 1)
TAGS = ("新客", "价格敏感", "母婴", "咖啡爱好者", "学生", "白领", "健身", "宠物", "美妆", "数码")
TAG_P = (0.12, 0.25, 0.08, 0.2, 0.1, 0.22, 0.07, 0.06, 0.09, 0.08)
CARRIERS = ("顺丰速运", "中通快递", "圆通速递", "京东物流")
TARGETS = ("friend", "group", "moments")
DISTRICTS = ("静安", "徐汇", "浦东", "黄浦", "长宁", "普陀", "虹口", "杨浦", "闵行", "宝山")
ADJ = ("经典", "轻盈", "限定", "家庭装", "进口", "有机", "手作", "便携")
NOUNS = ("拿铁咖啡豆", "保温杯", "蓝牙耳机", "护手霜", "婴儿湿巾", "燕麦奶", "帆布包", "运动水壶",
         "香薰蜡烛", "猫粮")
SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱")
PREFIXES = ("小", "阿", "老", "")
SUFFIXES = ("", "同学", "酱", "不加糖", "爱喝咖啡", "1997", "的日常")
PHONE_PREFIXES = ("135", "136", "138", "139", "150", "151", "158", "159", "177", "180", "186",
                  "187", "188", "199")
_ALPHABET = bytes.maketrans(bytes(range(64)), b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                  b"vwxyz0123456789-_")
CHUNK = 25_000  # rows formatted at a time: bounds the memory held by strings


def user_ids(n: int) -> list[str]:
    width = max(6, len(str(max(n - 1, 0))))
    return [f"u{i:0{width}d}" for i in range(n)]


def local_times(ts: NDArray[np.int64]) -> list[str]:
    """UTC micros -> "YYYY-MM-DDTHH:MM:SS+08:00" (second precision)."""
    secs = ((ts + LOCAL_OFFSET) // 1_000_000).astype("datetime64[s]")
    return [s + "+08:00" for s in np.datetime_as_string(secs, unit="s").tolist()]


def write_users(out: IO[str], rng: np.random.Generator, users: Users, ids: list[str],
                end: int) -> int:
    """Draw every attribute as numpy columns (in a fixed order), then write in chunks so that
    only one chunk's strings are alive at a time."""
    n = users.n
    openid = rng.integers(0, 64, (n, 27), dtype=np.uint8)  # letters via _ALPHABET
    wecom = rng.random(n) < 0.08
    member = rng.random(n) < 0.8
    value = users.buy_rate * users.spend
    rank = np.empty(n, dtype=np.float64)
    rank[np.argsort(-value, kind="stable")] = np.arange(n) / max(n, 1)
    tier = np.where(rank < 0.04, 2, np.where(rank < 0.22, 1, 0))
    del rank, value
    weights = np.array(CITY_WEIGHTS, dtype=np.float64)
    city = rng.choice(len(CITIES), n, p=weights / weights.sum())
    tag_bits = np.zeros(n, dtype=np.int64)
    for k, p in enumerate(TAG_P):
        tag_bits |= (rng.random(n) < p).astype(np.int64) << k
    has_birthday = rng.random(n) < 0.62
    birthday = np.datetime64("1968-01-01") + rng.integers(0, 40 * 365, n)
    has_points = rng.random(n) < 0.75
    points = (rng.pareto(1.3, n) * 300).astype(np.int64)
    expire_day = (end + LOCAL_OFFSET) // DAY + rng.integers(0, 120, n)
    expire = expire_day * DAY - LOCAL_OFFSET + DAY - 1_000_000
    has_phone = rng.random(n) < 0.7
    phone_prefix = rng.integers(0, len(PHONE_PREFIXES), n)
    phone_rest = rng.integers(0, 100_000_000, n)
    has_nick = rng.random(n) < 0.85
    nick = rng.integers(0, 1 << 30, n)
    tag_text = [",".join(f'"{t}"' for k, t in enumerate(TAGS) if bits >> k & 1)
                for bits in range(1 << len(TAGS))]
    tiers = ("silver", "gold", "black_gold")
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        oid = openid[lo:hi].tobytes().translate(_ALPHABET).decode("ascii")
        signup = local_times(users.signup[lo:hi])
        bday = np.datetime_as_string(birthday[lo:hi], unit="D").tolist()
        exp = local_times(expire[lo:hi])
        c_wecom, c_member, c_tier = wecom[lo:hi].tolist(), member[lo:hi].tolist(), \
            tier[lo:hi].tolist()
        c_city, c_tags = city[lo:hi].tolist(), tag_bits[lo:hi].tolist()
        c_bd, c_hp, c_pts = has_birthday[lo:hi].tolist(), has_points[lo:hi].tolist(), \
            points[lo:hi].tolist()
        c_hph, c_pp, c_pr = has_phone[lo:hi].tolist(), phone_prefix[lo:hi].tolist(), \
            phone_rest[lo:hi].tolist()
        c_hn, c_nick = has_nick[lo:hi].tolist(), nick[lo:hi].tolist()
        lines = []
        for j in range(hi - lo):
            o = oid[j * 27:(j + 1) * 27]
            parts = [f'{{"user_id":"{ids[lo + j]}","openid":"o{o}"']
            if c_wecom[j]:
                parts.append(f',"wecom_userid":"wm{o[:16]}"')
            if c_member[j]:
                parts.append(f',"tier":"{tiers[c_tier[j]]}"')
            parts.append(f',"city":"{CITIES[c_city[j]]}","tags":[{tag_text[c_tags[j]]}],'
                         f'"signup_at":"{signup[j]}"')
            if c_bd[j]:
                parts.append(f',"birthday":"{bday[j]}"')
            if c_hp[j] and c_pts[j] > 0:
                parts.append(f',"points":{c_pts[j]},"points_expire_at":"{exp[j]}"')
            else:
                parts.append(',"points":0')
            if c_hph[j]:
                parts.append(f',"phone":"{PHONE_PREFIXES[c_pp[j]]}{c_pr[j]:08d}"')
            if c_hn[j]:
                k = c_nick[j]
                parts.append(f',"nickname":"{PREFIXES[k % 4]}{SURNAMES[(k >> 2) % len(SURNAMES)]}'
                             f'{SUFFIXES[(k >> 6) % len(SUFFIXES)]}"')
            parts.append("}\n")
            lines.append("".join(parts))
        out.write("".join(lines))
    return n


def write_events(out: IO[str], events: Events, ids: list[str]) -> int:
    total = events.ts.shape[0]
    for lo in range(0, total, CHUNK):
        hi = min(total, lo + CHUNK)
        out.write("".join(_event_lines(events, ids, lo, hi)))
    return total


def _event_lines(ev: Events, ids: list[str], lo: int, hi: int) -> Iterator[str]:
    ts = local_times(ev.ts[lo:hi])
    user = ev.user[lo:hi].tolist()
    typ = ev.type[lo:hi].tolist()
    amount = ev.amount[lo:hi].tolist()
    p1, p2, p3 = ev.p1[lo:hi].tolist(), ev.p2[lo:hi].tolist(), ev.p3[lo:hi].tolist()
    for k in range(hi - lo):
        t = typ[k]
        head = (f'{{"event_id":"e{lo + k:010d}","user_id":"{ids[user[k]]}",'
                f'"type":"{TYPES[t]}","ts":"{ts[k]}"')
        if t == ORDER:
            fen = amount[k]
            yield (f'{head},"amount":{fen // 100}.{fen % 100:02d},"props":{{"items":{p1[k]},'
                   f'"order_id":"o{p2[k]:09d}"}}}}\n')
        elif t == SHIPPED:
            yield (f'{head},"props":{{"order_id":"o{p1[k]:09d}",'
                   f'"carrier":"{CARRIERS[p2[k]]}"}}}}\n')
        elif t == CART:
            yield f'{head},"props":{{"item_id":"i{p1[k]:05d}"}}}}\n'
        elif t == SUBSCRIBE:
            yield f'{head},"props":{{"template":"{TEMPLATES[p1[k]]}"}}}}\n'
        elif t == SHARE:
            yield f'{head},"props":{{"target":"{TARGETS[p1[k]]}"}}}}\n'
        elif t == PRICE_DROP:
            item, new, old = p1[k], p2[k], p3[k]
            yield (f'{head},"props":{{"item_id":"i{item:05d}","item_name":'
                   f'"{ADJ[item % len(ADJ)]}{NOUNS[item // len(ADJ) % len(NOUNS)]}",'
                   f'"new_price":{new // 100}.{new % 100:02d},'
                   f'"old_price":{old // 100}.{old % 100:02d}}}}}\n')
        elif t == GEOFENCE:
            s = p1[k]
            yield (f'{head},"props":{{"store_id":"s{s + 1:03d}","store_name":'
                   f'"再来咖啡·{DISTRICTS[s % len(DISTRICTS)]}{s // len(DISTRICTS) + 1}号店"}}}}\n')
        elif t == COUPON_USED:
            yield f'{head},"props":{{"coupon_id":"c{p1[k]:09d}"}}}}\n'
        elif t in (CHECKIN, INVITEE):
            yield head + "}\n"
        else:  # pragma: no cover - every type is listed above
            raise ValueError(f"unknown event type code {t}")
