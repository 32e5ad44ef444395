"""`wecom`: WeCom (企业微信) application text messages.

Options: `corpid` and `agentid` (required), `secret_env` (required: the variable holding the
application's Secret), `base_url` (default https://qyapi.weixin.qq.com), `timeout`,
`connect_timeout`, `concurrency`.

Token: GET {base_url}/cgi-bin/gettoken?corpid=..&corpsecret=.. -> {"access_token",
"expires_in"}, cached until 60 s before expiry and shared by every send of the channel (the
secret travels in the query string, as WeCom requires; the engine never logs it).

Send: POST {base_url}/cgi-bin/message/send?access_token=TOKEN with {"touser": userid,
"msgtype": "text", "agentid": N, "text": {"content": text}}; the request payload is {"text"}.

Errors: 0 sent (provider_id = msgid) unless the reply lists the recipient in `invaliduser`
(failed, code `invaliduser`); 40014/42001 refresh the token once and resend once; -1, 45009
and 45033 retry; other codes failed. Not idempotent: a read timeout after sending is `unknown`.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from ..config import Channel as ChannelConfig
from ..errors import CannotRun
from .access_token import TokenCache, TokenUnavailable
from .base import FAILED, RETRY, SENT, SendRequest, SendResult
from .transport import base_url, call, env_secret, http_status_result, make_http, \
    mask, not_answered, post, required

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_REJECTED = frozenset({40014, 42001})
TRANSIENT = frozenset({-1, 45009, 45033})


class WeComChannel:
    kind = "wecom"
    idempotent = False

    def __init__(self, config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> None:
        self.name = config.name
        self.corpid = required(config, "corpid", "the WeCom corp id (企业ID)")
        agentid = required(config, "agentid", "the WeCom application's AgentId")
        try:
            self.agentid = int(agentid)
        except ValueError:
            raise CannotRun(f"channel `{self.name}` (wecom): `agentid` must be a number") from None
        self._secret = env_secret(config, env, "secret_env", "the WeCom application Secret")
        self.base_url = base_url(config, DEFAULT_BASE_URL)
        self._http = make_http(config, kw, self.base_url)
        self._tokens = TokenCache(self._fetch_token)

    def __repr__(self) -> str:
        return (f"WeComChannel(name={self.name!r}, corpid={self.corpid!r}, "
                f"agentid={self.agentid}, base_url={self.base_url!r})")

    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        out = call(self._http, "GET", "/cgi-bin/gettoken", idempotent=True,
                   params={"corpid": self.corpid, "corpsecret": self._secret},
                   secrets=(self._secret,))
        if isinstance(out, SendResult):
            raise TokenUnavailable(SendResult(RETRY, "token_" + out.code,
                                              "could not get an access token: " + out.detail))
        data = out.json()
        if out.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
            what = (f"{data.get('errcode')} {data.get('errmsg', '')}" if isinstance(data, dict)
                    else f"HTTP {out.status}")
            raise TokenUnavailable(SendResult(RETRY, "token_error", "could not get an access "
                                              "token: " + mask(what, (self._secret,))))
        return str(data["access_token"]), float(data.get("expires_in") or 7200)

    def _post(self, token: str, body: bytes, request: SendRequest) -> SendResult:
        secrets = (self._secret, token)
        out = post(self._http, "/cgi-bin/message/send", content=body,
                   params={"access_token": token}, idempotent=False, secrets=secrets,
                   headers={"Content-Type": "application/json",
                            "X-Zailai-Item-Id": request.item_id})
        if isinstance(out, SendResult):
            return out
        if out.status != 200:
            return http_status_result(out, False, secrets)
        data = out.json()
        if not isinstance(data, dict) or "errcode" not in data:
            return not_answered(False, "bad_response", "unreadable reply")
        errcode = int(data.get("errcode") or 0)
        detail = mask(f"{errcode} {data.get('errmsg', '')}", secrets)
        if errcode == 0:
            invalid = str(data.get("invaliduser") or "").split("|")
            if request.recipient in invalid:
                return SendResult(FAILED, "invaliduser", "WeCom does not know this userid")
            return SendResult(SENT, "0", "ok", provider_id=str(data.get("msgid") or "") or None)
        if errcode in TRANSIENT or errcode in TOKEN_REJECTED:
            return SendResult(RETRY, str(errcode), detail)
        return SendResult(FAILED, str(errcode), detail)

    def send(self, request: SendRequest) -> SendResult:
        text = request.payload.get("text")
        if not request.recipient:
            return SendResult(FAILED, "no_recipient", "the user has no WeCom userid")
        if not text:
            return SendResult(FAILED, "bad_payload", "a WeCom message needs `text`")
        body = orjson.dumps({"touser": request.recipient, "msgtype": "text",
                             "agentid": self.agentid, "text": {"content": str(text)}})
        try:
            token = self._tokens.get()
            result = self._post(token, body, request)
            if result.status == RETRY and result.code in {str(c) for c in TOKEN_REJECTED}:
                token = self._tokens.refresh(token)
                result = self._post(token, body, request)
        except TokenUnavailable as exc:
            return exc.result
        return result

    def close(self) -> None:
        self._http.close()
