"""The delivery channels against the fake WeChat server (tests/fake_wechat.py).

One contract, run for every channel: success is `sent` with a provider id; a transient fault is
`retry` and nothing was accepted; a permanent one is `failed`; a reply that never came after the
provider accepted is `unknown` for non-idempotent channels and `retry` (then exactly one
acceptance) for idempotent ones; no secret ever shows in a result, a repr or a log; a missing
environment variable is CannotRun naming it. Then what only one channel does: the WeChat token
cache, consent exhaustion, the WeChat Pay signature and out_request_no, the webhook HMAC.
"""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

import httpx
import pytest

from engine.channels import FAILED, RETRY, SENT, UNKNOWN, Channel, SendRequest, SendResult, \
    build_channel
from engine.channels.access_token import TokenCache
from engine.channels.transport import mask
from engine.config import Channel as ChannelConfig
from engine.errors import CannotRun

import fake_wechat as fw
from conftest import REPO

READ_TIMEOUT = 0.25
LATE = f"delay:{READ_TIMEOUT * 2.5}"  # the fake accepts, then answers after the client gave up


@dataclass(frozen=True)
class Case:
    kind: str
    endpoint: str  # the fake's endpoint ("" for console: it writes to a stream)
    recipient: str
    payload: dict[str, Any]
    transient: tuple[str, ...]  # faults that must give `retry`
    permanent: tuple[str, ...]  # faults that must give `failed`
    secret_envs: tuple[str, ...]


CASES = [
    Case("console", "", "oUser1", {"text": "优惠券已到账"},
         ("write_error",), ("bad_payload",), ()),
    Case("webhook", "webhook", "oUser1", {"body": {"event": "winback", "amount": 10}},
         ("http_500", "http_503", "http_429", "connect"), ("http_400", "http_404"),
         ("WEBHOOK_SECRET",)),
    Case("wechat_subscribe", "subscribe", "oUser1",
         {"template_id": fw.TEMPLATE_ID, "page": "pages/coupon/index?id=1",
          "data": {"thing1": "满100减10元券", "amount2": "¥10.00", "date3": "2026-11-09"}},
         ("-1", "45009", "43108", "http_502", "connect"),
         ("47003", "40003", "40037", "41030", "45168", "43107", "43101", "bad_payload"),
         ("WECHAT_APPSECRET",)),
    Case("wechat_coupon", "coupon", "oUser1", {"stock_id": fw.STOCK_ID},
         ("SYSTEM_ERROR", "FREQUENCY_LIMITED", "http_500", "connect"),
         ("RULE_LIMIT", "USER_AL_GET_COUPON", "PARAM_ERROR", "用户非法", "NOT_ENOUGH",
          "bad_payload"),
         ("WECHATPAY_KEY", "WECHATPAY_SERIAL")),
    Case("sms", "sms", "+8613800000000", {"text": "【再来小店】券已到账。回T退订"},
         ("http_500", "RATE_LIMITED", "SYSTEM_BUSY", "connect"),
         ("INVALID_PHONE", "BLACKLISTED", "bad_payload"), ("SMS_API_KEY",)),
    Case("wecom", "wecom", "zhangsan", {"text": "会员日提醒"},
         ("-1", "45009", "45033", "http_500", "connect"), ("81013", "60020", "bad_payload"),
         ("WECOM_SECRET",)),
]
IDS = [c.kind for c in CASES]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultyStream(io.StringIO):
    """A console stream with queued faults: write_error, flush_error."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: list[str] = []

    def write(self, s: str) -> int:
        if self.faults and self.faults[0] == "write_error":
            self.faults.pop(0)
            raise OSError("disk full")
        return super().write(s)

    def flush(self) -> None:
        if self.faults and self.faults[0] == "flush_error":
            self.faults.pop(0)
            raise OSError("pipe closed")


class Rig:
    """One channel of a case wired to the fake, with faults armed by name."""

    def __init__(self, case: Case, fake: fw.FakeWeChat, *, options: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.case, self.fake = case, fake
        self.stream = FaultyStream()
        self.options = options if options is not None else fake.options(case.kind)
        self.env = env if env is not None else fake.env()
        self.channel: Channel = self.build()
        self._n = 0

    def build(self, options: dict[str, Any] | None = None) -> Channel:
        cfg = ChannelConfig(self.case.kind, self.case.kind, options or self.options)
        return build_channel(cfg, self.env, stream=self.stream, read_timeout=READ_TIMEOUT,
                             connect_timeout=1.0)

    def request(self, item_id: str | None = None, **changes: Any) -> SendRequest:
        self._n += 1
        req = SendRequest(item_id or f"item-{self.case.kind}-{self._n}", self.case.kind,
                          "coupon" if self.case.kind == "wechat_coupon" else "message",
                          "u1", self.case.recipient, dict(self.case.payload))
        return replace(req, **changes)

    def send_with(self, fault: str) -> SendResult:
        """One send with `fault` arranged: at the fake, on the stream, in the payload or the URL."""
        if fault == "ok":
            return self.channel.send(self.request())
        if fault == "bad_payload":
            return self.channel.send(self.request(payload={}))
        if fault == "connect":
            opts = {k: (v.replace(f":{self.fake.port}", f":{closed_port()}")
                        if isinstance(v, str) else v) for k, v in self.options.items()}
            channel = self.build(opts)
            try:
                return channel.send(self.request())
            finally:
                channel.close()
        if fault in ("write_error", "flush_error"):
            self.stream.faults.append(fault)
        elif fault == "late":
            if self.case.endpoint:
                self.fake.fault(self.case.endpoint, LATE)
            else:
                self.stream.faults.append("flush_error")
        else:
            self.fake.fault(self.case.endpoint, fault)
        return self.channel.send(self.request())

    def accepted(self) -> int:
        if not self.case.endpoint:
            return self.stream.getvalue().count("\n")
        return len(self.fake.accepted_for(self.case.endpoint))

    def secrets(self) -> list[str]:
        values = [self.env[v] for v in self.case.secret_envs]
        # a PEM key's body lines, not its BEGIN/END armour
        out = [line for v in values for line in v.splitlines() if "-----" not in line]
        return [s for s in out + list(self.fake.issued) if len(s) >= 8]


@pytest.fixture(params=CASES, ids=IDS)
def rig(request: pytest.FixtureRequest, fake_wechat: fw.FakeWeChat) -> Iterator[Rig]:
    r = Rig(request.param, fake_wechat)
    yield r
    r.channel.close()


def transient_params() -> list[Any]:
    return [pytest.param(c, f, id=f"{c.kind}-{f}") for c in CASES for f in c.transient]


def permanent_params() -> list[Any]:
    return [pytest.param(c, f, id=f"{c.kind}-{f}") for c in CASES for f in c.permanent]


# -- the contract ------------------------------------------------------------------------------

def test_contract_success_is_sent_with_a_provider_id(rig: Rig) -> None:
    first, second = rig.channel.send(rig.request()), rig.channel.send(rig.request())
    assert (first.status, second.status) == (SENT, SENT), (first, second)
    assert first.provider_id and second.provider_id and first.provider_id != second.provider_id
    assert rig.accepted() == 2
    assert rig.channel.name == rig.case.kind and rig.channel.kind == rig.case.kind
    assert rig.channel.idempotent is (rig.case.kind == "wechat_coupon")


@pytest.mark.parametrize("case, fault", transient_params())
def test_contract_transient_fault_is_retry(case: Case, fault: str,
                                           fake_wechat: fw.FakeWeChat) -> None:
    rig = Rig(case, fake_wechat)
    result = rig.send_with(fault)
    assert result.status == RETRY, result
    assert result.code and not result.consent_exhausted
    assert rig.accepted() == 0  # known not delivered
    again = rig.channel.send(rig.request())  # the fault was one-off: the next send goes through
    assert again.status == SENT, again
    rig.channel.close()


@pytest.mark.parametrize("case, fault", permanent_params())
def test_contract_permanent_fault_is_failed(case: Case, fault: str,
                                            fake_wechat: fw.FakeWeChat) -> None:
    rig = Rig(case, fake_wechat)
    result = rig.send_with(fault)
    assert result.status == FAILED, result
    assert result.code and result.provider_id is None
    assert result.consent_exhausted is (fault == "43101")
    assert rig.accepted() == 0
    rig.channel.close()


def test_contract_no_reply_after_acceptance(rig: Rig) -> None:
    """The provider took the request but the answer never came: at most once for messages;
    coupons resend the same out_request_no, and the provider issues exactly one."""
    item = rig.request()
    if rig.case.endpoint:
        rig.fake.fault(rig.case.endpoint, LATE)
    else:
        rig.stream.faults.append("flush_error")
    result = rig.channel.send(item)
    assert rig.accepted() == 1  # it did arrive
    if rig.channel.idempotent:
        assert result.status == RETRY and result.code == "timeout", result
        again = rig.channel.send(item)
        assert again.status == SENT and again.provider_id, again
        assert rig.accepted() == 1 and rig.fake.duplicates() == {}
    else:
        assert result.status == UNKNOWN, result
        assert result.provider_id is None


def test_contract_secrets_never_leak(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    results = [rig.send_with(f) for f in ("ok", rig.case.transient[0], rig.case.permanent[0],
                                          "late", "connect")]
    secrets = rig.secrets()
    assert len(secrets) >= len(rig.case.secret_envs)  # there is something to look for
    shown = [repr(r) for r in results] + [repr(rig.channel), str(rig.channel), caplog.text]
    for text in shown:
        for secret in secrets:
            assert secret not in text, f"a secret appears in: {text[:200]}"


def test_contract_missing_env_var_is_cannot_run(rig: Rig) -> None:
    if not rig.case.secret_envs:  # console needs no secret: it builds with an empty environment
        build_channel(ChannelConfig("console", "console", {}), {}).close()
    for var in rig.case.secret_envs:
        for env in ({k: v for k, v in rig.env.items() if k != var}, {**rig.env, var: " "}):
            with pytest.raises(CannotRun) as err:
                Rig(rig.case, rig.fake, env=env)
            assert var in str(err.value) and "not set" in str(err.value)
            assert not any(s in str(err.value) for s in rig.secrets())
    if rig.case.secret_envs:  # naming no variable at all is also a clear error
        opt = "key_env" if rig.case.kind == "wechat_coupon" else "secret_env"
        with pytest.raises(CannotRun, match=opt):
            Rig(rig.case, rig.fake, options={k: v for k, v in rig.options.items() if k != opt})


# -- wechat_subscribe --------------------------------------------------------------------------

SUBSCRIBE = CASES[2]


@pytest.fixture
def subscribe(fake_wechat: fw.FakeWeChat) -> Iterator[Rig]:
    r = Rig(SUBSCRIBE, fake_wechat)
    yield r
    r.channel.close()


def test_token_is_cached_across_sends(subscribe: Rig) -> None:
    for _ in range(5):
        assert subscribe.channel.send(subscribe.request()).status == SENT
    assert subscribe.fake.token_calls == {"stable_token": 1}


def test_token_refreshed_when_less_than_a_minute_left(subscribe: Rig) -> None:
    subscribe.fake.token_expires_in = 50  # always inside the 60 s margin
    for _ in range(3):
        assert subscribe.channel.send(subscribe.request()).status == SENT
    assert subscribe.fake.token_calls["stable_token"] == 3


@pytest.mark.parametrize("code", ["40001", "40014", "42001"])
def test_rejected_token_is_force_refreshed_once_and_the_send_retried(subscribe: Rig,
                                                                     code: str) -> None:
    assert subscribe.channel.send(subscribe.request()).status == SENT
    subscribe.fake.fault("subscribe", code)  # also invalidates the token at the fake
    result = subscribe.channel.send(subscribe.request())
    assert result.status == SENT, result
    assert subscribe.fake.token_calls == {"stable_token": 1, "stable_token_forced": 1}
    assert len(subscribe.fake.accepted_for("subscribe")) == 2
    subscribe.fake.fault("subscribe", code, code)  # rejected again after the refresh: give up
    again = subscribe.channel.send(subscribe.request())
    assert again.status == RETRY and again.code == code
    assert len(subscribe.fake.requests_to("subscribe")) == 1 + 2 + 2  # one resend, no more


def test_a_burst_of_rejections_costs_one_forced_refresh(subscribe: Rig) -> None:
    assert subscribe.channel.send(subscribe.request()).status == SENT
    subscribe.fake.expire_tokens()
    results: list[SendResult] = []
    barrier = threading.Barrier(8)

    def one(i: int) -> None:
        barrier.wait()
        results.append(subscribe.channel.send(subscribe.request(f"burst-{i}")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [SENT] * 8, results
    assert subscribe.fake.token_calls["stable_token_forced"] == 1


def test_token_cache_refresh_coalesces_on_the_stale_token() -> None:
    tokens = iter(["t1", "t2", "t3"])
    forced: list[bool] = []

    def fetch(force: bool) -> tuple[str, float]:
        forced.append(force)
        return next(tokens), 7200.0

    cache = TokenCache(fetch, clock=lambda: 1000.0)
    assert cache.get() == "t1" and cache.get() == "t1"
    assert cache.refresh("t1") == "t2"
    assert cache.refresh("t1") == "t2"  # another thread saw t1 rejected: reuse t2
    assert forced == [False, True]
    assert "t2" not in repr(cache)


def test_43101_means_consent_exhausted_and_no_retry(subscribe: Rig) -> None:
    subscribe.fake.fault("subscribe", "43101")
    result = subscribe.channel.send(subscribe.request())
    assert (result.status, result.code, result.consent_exhausted) == (FAILED, "43101", True)
    assert len(subscribe.fake.requests_to("subscribe")) == 1


def test_token_failure_is_retry_and_nothing_is_sent(subscribe: Rig) -> None:
    subscribe.fake.fault("stable_token", "-1")
    result = subscribe.channel.send(subscribe.request())
    assert (result.status, result.code) == (RETRY, "token_-1")
    assert subscribe.fake.requests_to("subscribe") == []
    wrong = Rig(SUBSCRIBE, subscribe.fake, env={**subscribe.env,
                                                "WECHAT_APPSECRET": "wrong-secret-123"})
    result = wrong.channel.send(wrong.request())
    assert (result.status, result.code) == (RETRY, "token_40125")
    assert "wrong-secret-123" not in repr(result)
    wrong.channel.close()


def test_the_message_body_is_what_wechat_expects(subscribe: Rig) -> None:
    subscribe.channel.send(subscribe.request())
    (sent,) = subscribe.fake.accepted_for("subscribe")
    assert sent.body == {
        "touser": "oUser1", "template_id": fw.TEMPLATE_ID, "page": "pages/coupon/index?id=1",
        "data": {"thing1": {"value": "满100减10元券"}, "amount2": {"value": "¥10.00"},
                 "date3": {"value": "2026-11-09"}},
        "miniprogram_state": "formal", "lang": "zh_CN"}


def test_the_fake_checks_template_and_keyword_values(subscribe: Rig) -> None:
    too_long = subscribe.request(payload={"template_id": fw.TEMPLATE_ID,
                                          "data": {"thing1": "二十一个字" * 5}})
    unknown = subscribe.request(payload={"template_id": "nope", "data": {"thing1": "x"}})
    assert subscribe.channel.send(too_long).code == "47003"
    assert subscribe.channel.send(unknown).code == "40037"
    example = subscribe.request(payload={"template_id": "J9kR2mX4example-coupon-arrival-tmpl",
                                         "data": {"thing1": "券到账", "amount2": "¥5"}})
    assert subscribe.channel.send(example).status == SENT  # the example project's templates


def test_connections_are_kept_alive_and_stale_ones_never_cost_a_message(subscribe: Rig) -> None:
    for _ in range(5):
        assert subscribe.channel.send(subscribe.request()).status == SENT
    assert subscribe.fake.connections_opened == 1  # one keep-alive connection, reused
    subscribe.fake.close_connections()  # the server drops idle connections
    time.sleep(0.05)
    result = subscribe.channel.send(subscribe.request())
    assert result.status == SENT, result  # not `unknown`: a closed idle connection is not reused
    assert subscribe.fake.connections_opened == 2


def test_connection_dropped_after_the_request_is_unknown(subscribe: Rig) -> None:
    subscribe.fake.fault("subscribe", "drop")
    result = subscribe.channel.send(subscribe.request())
    assert (result.status, result.code) == (UNKNOWN, "connection_lost")
    assert subscribe.channel.send(subscribe.request()).status == SENT


def test_tls_to_a_server_that_does_not_speak_it_is_a_connect_retry(
        fake_wechat: fw.FakeWeChat) -> None:
    opts = {**fake_wechat.options("sms"), "base_url": fake_wechat.url.replace("http:", "https:")}
    channel = build_channel(ChannelConfig("sms", "sms", opts), fake_wechat.env(),
                            connect_timeout=1.0)
    result = channel.send(SendRequest("t-1", "sms", "message", "u1", "+8613800000000",
                                      {"text": "hi"}))
    assert (result.status, result.code) == (RETRY, "connect")
    assert fake_wechat.accepted == []
    channel.close()


def test_mask_removes_secrets_and_tokens() -> None:
    text = "POST /send?access_token=ACCESS_abc123&x=1 with secret hunter22 failed"
    assert mask(text, ["hunter22"]) == "POST /send?access_token=***&x=1 with secret *** failed"


def test_the_fake_reports_duplicate_acceptances(subscribe: Rig) -> None:
    item = subscribe.request()
    subscribe.channel.send(item)
    assert subscribe.fake.duplicates() == {}
    subscribe.channel.send(item)  # what the outbox must never do for a message
    assert subscribe.fake.duplicates() == {("subscribe", item.item_id): 2}


# -- wechat_coupon -----------------------------------------------------------------------------

COUPON = CASES[3]


@pytest.fixture
def coupon(fake_wechat: fw.FakeWeChat) -> Iterator[Rig]:
    r = Rig(COUPON, fake_wechat)
    yield r
    r.channel.close()


def test_coupon_signature_is_verified_by_the_fake(coupon: Rig) -> None:
    assert coupon.channel.send(coupon.request()).status == SENT
    (seen,) = coupon.fake.requests_to("coupon")
    assert seen.status == 200
    other = fw.merchant_key("not-the-registered-one")[0]
    for env in ({**coupon.env, "WECHATPAY_KEY": other},
                {**coupon.env, "WECHATPAY_SERIAL": "0000UNKNOWNSERIAL"}):
        rig = Rig(COUPON, coupon.fake, env=env)
        result = rig.channel.send(rig.request())
        assert (result.status, result.code) == (FAILED, "SIGN_ERROR"), result
        rig.channel.close()
    assert len(coupon.fake.accepted_for("coupon")) == 1


def test_coupon_request_is_what_wechat_pay_expects(coupon: Rig) -> None:
    coupon.channel.send(coupon.request("winback-7d|u1|2026-11-09"))
    (issued,) = coupon.fake.accepted_for("coupon")
    assert issued.recipient == "oUser1"
    assert issued.body == {"stock_id": fw.STOCK_ID, "out_request_no": "winback-7d|u1|2026-11-09",
                           "appid": fw.APPID, "stock_creator_mchid": fw.MCHID}


def test_out_request_no_reuse_gives_one_coupon(coupon: Rig) -> None:
    item = coupon.request()
    first, second = coupon.channel.send(item), coupon.channel.send(item)
    assert first.status == second.status == SENT
    assert first.provider_id == second.provider_id
    assert len(coupon.fake.accepted_for("coupon")) == 1
    odd = coupon.request("rule:x/user 1")  # characters WeChat refuses: a stable digest instead
    a, b = coupon.channel.send(odd), coupon.channel.send(odd)
    assert a.status == SENT and a.provider_id == b.provider_id
    assert len(coupon.fake.accepted_for("coupon")) == 2


def test_coupon_budget_exhausted_is_failed(coupon: Rig) -> None:
    coupon.fake.stocks["tiny"] = 1
    ok = coupon.channel.send(coupon.request(payload={"stock_id": "tiny"}))
    no = coupon.channel.send(coupon.request(payload={"stock_id": "tiny"}))
    assert (ok.status, no.status, no.code) == (SENT, FAILED, "NOT_ENOUGH")


def test_an_unreadable_key_is_cannot_run_without_the_value(coupon: Rig) -> None:
    env = {**coupon.env, "WECHATPAY_KEY": "-----BEGIN PRIVATE KEY-----\nbm90YWtleQ==\n"
                                          "-----END PRIVATE KEY-----"}
    with pytest.raises(CannotRun, match="WECHATPAY_KEY") as err:
        Rig(COUPON, coupon.fake, env=env)
    assert "bm90YWtleQ" not in str(err.value)


def test_a_one_line_pem_with_escaped_newlines_is_accepted(coupon: Rig) -> None:
    env = {**coupon.env, "WECHATPAY_KEY": coupon.env["WECHATPAY_KEY"].replace("\n", "\\n")}
    rig = Rig(COUPON, coupon.fake, env=env)
    assert rig.channel.send(rig.request()).status == SENT
    rig.channel.close()


# -- webhook, wecom, console -------------------------------------------------------------------

def test_webhook_is_signed_with_the_secret(fake_wechat: fw.FakeWeChat) -> None:
    good = Rig(CASES[1], fake_wechat)
    result = good.channel.send(good.request("wh-1"))
    assert result.status == SENT
    (got,) = fake_wechat.accepted_for("webhook")
    assert got.body == {"item_id": "wh-1", "channel": "webhook", "user_id": "u1",
                        "recipient": "oUser1", "payload": CASES[1].payload}
    bad = Rig(CASES[1], fake_wechat, env={**fake_wechat.env(), "WEBHOOK_SECRET": "not-it"})
    result = bad.channel.send(bad.request())
    assert (result.status, result.code) == (FAILED, "http_401")
    assert len(fake_wechat.accepted_for("webhook")) == 1
    good.channel.close()
    bad.channel.close()


def test_wecom_invalid_user_is_failed(fake_wechat: fw.FakeWeChat) -> None:
    rig = Rig(CASES[5], fake_wechat)
    result = rig.channel.send(rig.request(recipient="nobody-here"))
    assert (result.status, result.code) == (FAILED, "invaliduser")
    rig.fake.fault("wecom", "40001")  # token expired: one refresh, the send goes through
    assert rig.channel.send(rig.request()).status == SENT
    assert rig.fake.token_calls["wecom"] == 2
    rig.channel.close()


def test_console_writes_one_readable_line(fake_wechat: fw.FakeWeChat) -> None:
    rig = Rig(CASES[0], fake_wechat)
    rig.channel.send(rig.request("i-1"))
    rig.channel.send(rig.request("i-2", payload={"template_id": "T1",
                                                 "data": {"thing1": "券\n到账"}}))
    assert rig.stream.getvalue().splitlines() == [
        "[console] i-1 -> u1 (oUser1): 优惠券已到账",
        "[console] i-2 -> u1 (oUser1): template T1: thing1=券 到账"]


def test_unknown_channel_type_is_cannot_run() -> None:
    with pytest.raises(CannotRun, match="pigeon"):
        build_channel(ChannelConfig("p", "pigeon", {}), {})


def test_bad_timeout_option_is_cannot_run(fake_wechat: fw.FakeWeChat) -> None:
    opts = {**fake_wechat.options("sms"), "timeout": "soon"}
    with pytest.raises(CannotRun, match="timeout"):
        build_channel(ChannelConfig("sms", "sms", opts), fake_wechat.env())


# -- the fake as a process ---------------------------------------------------------------------

def test_the_fake_runs_as_a_process(tmp_path: Any) -> None:
    key = tmp_path / "key.pem"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_wechat", "--port", "0",
                             "--merchant-key-out", str(key)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = {**info["env"], "WECHATPAY_KEY": key.read_text("utf-8")}
        opts = {"mchid": fw.MCHID, "appid": fw.APPID, "key_env": "WECHATPAY_KEY",
                "serial_env": "WECHATPAY_SERIAL", "base_url": info["url"]}
        channel = build_channel(ChannelConfig("wechat_coupon", "wechat_coupon", opts), env)
        assert channel.send(SendRequest("p-1", "wechat_coupon", "coupon", "u1", "oX",
                                        {"stock_id": fw.STOCK_ID})).status == SENT
        channel.close()
        httpx.post(f"{info['url']}/_fake/faults", json={"endpoint": "sms", "faults": ["x"]})
        state = httpx.get(f"{info['url']}/_fake/state").json()
        assert [a["item_id"] for a in state["accepted"]] == ["p-1"]
        assert state["duplicates"] == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
