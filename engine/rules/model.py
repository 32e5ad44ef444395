"""The rule model: what a rule file means once it has been read and checked.

Frozen dataclasses, built by `loader.py`; every later stage (plan, run, daemon, tests,
report) reads rules only through these types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping, Union

from ..cron import Cron
from ..lang.typed import TExpr

TRIGGER_KINDS = ("schedule", "every", "event", "date", "coupon_expiring")


@dataclass(frozen=True)
class Condition:
    text: str
    expr: TExpr = field(compare=False)


@dataclass(frozen=True)
class Trigger:
    kind: str  # one of TRIGGER_KINDS ("invalid" only in a project that failed validation)
    cron: Cron | None = None
    every: timedelta | None = None
    event: str | None = None
    where: Condition | None = None
    wait: timedelta | None = None
    date_attr: str | None = None  # user attribute name, without `user.`
    before: timedelta | None = None
    after: timedelta | None = None
    annual: bool = False
    stock: str | None = None  # coupon_expiring: only this stock


@dataclass(frozen=True)
class CouponAction:
    stock: str
    kind: str = "coupon"


@dataclass(frozen=True)
class MessageAction:
    channel: str
    fallback: tuple[str, ...] = ()
    template: str | None = None
    page: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    text: str | None = None
    title: str | None = None
    kind: str = "message"


@dataclass(frozen=True)
class PointsAction:
    add: int
    reason: str = ""
    kind: str = "points"


@dataclass(frozen=True)
class TagAction:
    op: str  # add | remove
    tag: str
    kind: str = "tag"


@dataclass(frozen=True)
class WebhookAction:
    channel: str = "webhook"
    body: Any = None
    kind: str = "webhook"


Action = Union[CouponAction, MessageAction, PointsAction, TagAction, WebhookAction]


@dataclass(frozen=True)
class Limit:
    max: int
    per: timedelta


@dataclass(frozen=True)
class Goal:
    event: str
    within: timedelta
    where: Condition | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int
    actions: tuple[Action, ...] | None = None  # None: the rule's own actions


@dataclass(frozen=True)
class Experiment:
    holdout: float = 0.0  # 0.10 for 10%
    variants: tuple[Variant, ...] = ()


@dataclass(frozen=True)
class Allow:
    check: str
    reason: str


@dataclass(frozen=True)
class Rule:
    id: str
    trigger: Trigger
    actions: tuple[Action, ...]
    name: str = ""
    description: str = ""
    owner: str = ""
    enabled: bool = True
    category: str = "marketing"
    priority: int = 0
    fire: str = "on_enter"
    audience: Condition | None = None
    unless: Condition | None = None
    limits: Limit | None = None
    goal: Goal | None = None
    experiment: Experiment | None = None
    allow: tuple[Allow, ...] = ()
    path: str = ""
    line: int = 0
    content_hash: str = ""

    @property
    def marketing(self) -> bool:
        return self.category == "marketing"

    def all_actions(self) -> tuple[Action, ...]:
        """The rule's actions plus every variant's own actions."""
        out = list(self.actions)
        if self.experiment:
            for v in self.experiment.variants:
                out.extend(v.actions or ())
        return tuple(out)
