"""`wechat_subscribe`: mini-program subscription messages through subscribeMessage.send.

Options: `appid` (required), `secret_env` (required: the variable holding the AppSecret),
`base_url` (default https://api.weixin.qq.com), `miniprogram_state` (default `formal`), `lang`
(default `zh_CN`), `timeout`, `connect_timeout`, `concurrency`.

Token: POST {base_url}/cgi-bin/stable_token {"grant_type": "client_credential", "appid",
"secret", "force_refresh"}, cached until 60 s before its expiry and shared by every send of the
channel; on 40001/40014/42001 it is refreshed once (force_refresh) and the send retried once.

Send: POST {base_url}/cgi-bin/message/subscribe/send?access_token=TOKEN with
{"touser": openid, "template_id", "page", "data": {"thing1": {"value": "..."}},
"miniprogram_state", "lang"}; the request payload is {"template_id", "page", "data"}.

Errors (WECHAT.md §1): 0 sent (provider_id = msgid); 43101 failed with consent_exhausted (the
user's quota for the template is used up or revoked); 47003 40003 40037 41030 45168 43107 and
any other code failed; -1, 45009 and 43108 retry. Not idempotent: a read timeout after the
request was sent is `unknown`, never resent.
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from ..config import Channel as ChannelConfig
from .access_token import TokenCache, TokenUnavailable
from .base import FAILED, RETRY, SENT, SendRequest, SendResult
from .transport import Reply, base_url, env_secret, http_status_result, make_http, \
    mask, not_answered, post, required

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
TOKEN_REJECTED = frozenset({40001, 40014, 42001})
PERMANENT = frozenset({47003, 40003, 40037, 41030, 45168, 43107, 47001, 44002})
TRANSIENT = frozenset({-1, 45009, 43108})
CONSENT_EXHAUSTED = 43101


def errcode_result(errcode: int, errmsg: str, msgid: Any, secrets: tuple[str, ...]) -> SendResult:
    code = str(errcode)
    if errcode == 0:
        return SendResult(SENT, code, "ok", provider_id=str(msgid) if msgid is not None else None)
    detail = mask(f"{errcode} {errmsg}".strip(), secrets)
    if errcode == CONSENT_EXHAUSTED:
        return SendResult(FAILED, code, detail, consent_exhausted=True)
    if errcode in TRANSIENT or errcode in TOKEN_REJECTED:
        return SendResult(RETRY, code, detail, retry_after=1.0 if errcode == 43108 else None)
    return SendResult(FAILED, code, detail)  # PERMANENT and codes we do not know


class WeChatSubscribeChannel:
    kind = "wechat_subscribe"
    idempotent = False

    def __init__(self, config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> None:
        self.name = config.name
        self.appid = required(config, "appid", "the mini-program's AppID")
        self._secret = env_secret(config, env, "secret_env", "the mini-program's AppSecret")
        self.base_url = base_url(config, DEFAULT_BASE_URL)
        self.miniprogram_state = str(config.options.get("miniprogram_state") or "formal")
        self.lang = str(config.options.get("lang") or "zh_CN")
        self._http = make_http(config, kw, self.base_url)
        self._tokens = TokenCache(self._fetch_token, **({"clock": kw["clock"]}
                                                        if "clock" in kw else {}))

    def __repr__(self) -> str:
        return (f"WeChatSubscribeChannel(name={self.name!r}, appid={self.appid!r}, "
                f"base_url={self.base_url!r})")

    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches

    def _secrets(self, *more: str) -> tuple[str, ...]:
        return (self._secret, *more)

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        body = orjson.dumps({"grant_type": "client_credential", "appid": self.appid,
                             "secret": self._secret, "force_refresh": force})
        out = post(self._http, "/cgi-bin/stable_token", content=body,
                   headers={"Content-Type": "application/json"}, idempotent=True,
                   secrets=self._secrets())
        if isinstance(out, SendResult):  # never sent, so the message is not either
            raise TokenUnavailable(SendResult(RETRY, "token_" + out.code,
                                              "could not get an access token: " + out.detail))
        data = out.json()
        if out.status != 200 or not isinstance(data, dict):
            r = http_status_result(out, True, self._secrets())
            raise TokenUnavailable(SendResult(RETRY, "token_" + r.code,
                                              "could not get an access token: " + r.detail))
        token = data.get("access_token")
        if not token:
            detail = mask(f"{data.get('errcode')} {data.get('errmsg', '')}", self._secrets())
            raise TokenUnavailable(SendResult(RETRY, f"token_{data.get('errcode')}",
                                              "could not get an access token: " + detail))
        return str(token), float(data.get("expires_in") or 7200)

    def _payload(self, request: SendRequest) -> bytes | SendResult:
        p = request.payload
        template_id, data = p.get("template_id"), p.get("data")
        if not request.recipient:
            return SendResult(FAILED, "no_recipient", "the user has no openid")
        if not template_id or not isinstance(data, (dict, Mapping)) or not data:
            return SendResult(FAILED, "bad_payload", "a subscription message needs "
                              "`template_id` and a non-empty `data` mapping")
        body: dict[str, Any] = {
            "touser": request.recipient,
            "template_id": str(template_id),
            "data": {str(k): {"value": str(v)} for k, v in data.items()},
            "miniprogram_state": str(p.get("miniprogram_state") or self.miniprogram_state),
            "lang": str(p.get("lang") or self.lang),
        }
        if p.get("page"):
            body["page"] = str(p["page"])
        return orjson.dumps(body)

    def _post(self, token: str, body: bytes, item_id: str) -> SendResult:
        out = post(self._http, "/cgi-bin/message/subscribe/send", content=body,
                   params={"access_token": token},
                   headers={"Content-Type": "application/json", "X-Zailai-Item-Id": item_id},
                   idempotent=False, secrets=self._secrets(token))
        if isinstance(out, SendResult):
            return out
        return self._read(out, token)

    def _read(self, reply: Reply, token: str) -> SendResult:
        if reply.status != 200:
            return http_status_result(reply, False, self._secrets(token))
        data = reply.json()
        if not isinstance(data, dict) or "errcode" not in data and "msgid" not in data:
            return not_answered(False, "bad_response", f"unreadable reply: "
                                f"{mask(reply.text(80), self._secrets(token))}")
        try:
            errcode = int(data.get("errcode", 0))
        except (TypeError, ValueError):
            return not_answered(False, "bad_response", "errcode is not a number")
        return errcode_result(errcode, str(data.get("errmsg", "")), data.get("msgid"),
                              self._secrets(token))

    def send(self, request: SendRequest) -> SendResult:
        body = self._payload(request)
        if isinstance(body, SendResult):
            return body
        try:
            token = self._tokens.get()
            result = self._post(token, body, request.item_id)
            if result.status == RETRY and result.code.lstrip("-").isdigit() \
                    and int(result.code) in TOKEN_REJECTED:
                token = self._tokens.refresh(token)
                result = self._post(token, body, request.item_id)
        except TokenUnavailable as exc:
            return exc.result
        return result

    def close(self) -> None:
        self._http.close()
