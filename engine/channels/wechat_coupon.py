"""`wechat_coupon`: WeChat Pay APIv3 cash coupons (发放指定批次的代金券).

Options: `mchid` and `appid` (required), `key_env` (the variable holding the merchant's RSA
private key, PEM), `serial_env` (the variable holding the merchant certificate's serial
number), `stock_creator_mchid` (default `mchid`), `base_url` (default
https://api.mch.weixin.qq.com), `timeout`, `connect_timeout`, `concurrency`.

Request: POST {base_url}/v3/marketing/favor/users/{openid}/coupons with {"stock_id",
"out_request_no", "appid", "stock_creator_mchid"}; the request payload is {"stock_id"} and
optionally {"stock_creator_mchid"}. `out_request_no` is the outbox item id (when it uses only
the characters WeChat allows, letters, digits and |_*-, up to 128; otherwise a stable digest of
it), so a resend issues no second coupon. Signed as APIv3 requires:

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",
                   timestamp="..",serial_no=".."
    signature = base64(RSA-SHA256(key, "POST\\n{path?query}\\n{timestamp}\\n{nonce}\\n{body}\\n"))

Errors (WECHAT.md §4): 200 {coupon_id} sent; HTTP 5xx, 429, SYSTEM_ERROR, FREQUENCY_LIMITED and
timeouts retry (idempotent); RULE_LIMIT, USER_AL_GET_COUPON, PARAM_ERROR, SIGN_ERROR,
NOT_ENOUGH, 用户非法 and any other error failed.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets as _random
from typing import Any, Callable, Mapping
from urllib.parse import quote

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..config import Channel as ChannelConfig
from ..errors import CannotRun
from .base import FAILED, RETRY, SENT, SendRequest, SendResult
from .. import clock
from .transport import base_url, env_secret, http_status_result, make_http, mask, \
    post, required

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
TRANSIENT = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "SYSTEMERROR"})
_REQUEST_NO = re.compile(r"^[A-Za-z0-9|_*\-]{1,128}$")


def out_request_no(item_id: str) -> str:
    """The outbox item id when WeChat accepts it as out_request_no, else a stable digest."""
    if _REQUEST_NO.match(item_id):
        return item_id
    return "z" + hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:40]


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    text = pem.strip()
    if "\n" not in text and "\\n" in text:  # a PEM put in one line of an env file
        text = text.replace("\\n", "\n")
    key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def sign(key: rsa.RSAPrivateKey, message: str) -> str:
    raw = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def authorization(key: rsa.RSAPrivateKey, *, mchid: str, serial_no: str, method: str,
                  url_path: str, body: str, timestamp: int, nonce: str) -> str:
    """The APIv3 Authorization header for one request."""
    message = f"{method}\n{url_path}\n{timestamp}\n{nonce}\n{body}\n"
    return (f'WECHATPAY2-SHA256-RSA2048 mchid="{mchid}",nonce_str="{nonce}",'
            f'signature="{sign(key, message)}",timestamp="{timestamp}",serial_no="{serial_no}"')


class WeChatCouponChannel:
    kind = "wechat_coupon"
    idempotent = True

    def __init__(self, config: ChannelConfig, env: Mapping[str, str], **kw: Any) -> None:
        self.name = config.name
        self.mchid = required(config, "mchid", "the WeChat Pay merchant id")
        self.appid = required(config, "appid", "the AppID the coupons are issued for")
        self.stock_creator_mchid = str(config.options.get("stock_creator_mchid") or self.mchid)
        pem = env_secret(config, env, "key_env", "the merchant's API private key (PEM)")
        self._serial = env_secret(config, env, "serial_env",
                                  "the merchant certificate's serial number").strip()
        try:
            self._key = load_private_key(pem)
        except (ValueError, TypeError, UnicodeEncodeError):
            var = config.options.get("key_env")
            raise CannotRun(f"channel `{self.name}` (wechat_coupon): environment variable {var} "
                            "does not hold an unencrypted RSA private key in PEM form") from None
        self.base_url = base_url(config, DEFAULT_BASE_URL)
        self._http = make_http(config, kw, self.base_url)
        self._clock: Callable[[], float] = kw.get("clock") or clock.wall

    def __repr__(self) -> str:
        return (f"WeChatCouponChannel(name={self.name!r}, mchid={self.mchid!r}, "
                f"appid={self.appid!r}, base_url={self.base_url!r})")

    def send(self, request: SendRequest) -> SendResult:
        stock_id = request.payload.get("stock_id")
        if not request.recipient:
            return SendResult(FAILED, "no_recipient", "the user has no openid")
        if not stock_id:
            return SendResult(FAILED, "bad_payload", "a coupon needs `stock_id` (the WeChat "
                              "stock of the coupon, coupons.yaml `wechat_stock_id`)")
        body = orjson.dumps({
            "stock_id": str(stock_id),
            "out_request_no": out_request_no(request.item_id),
            "appid": self.appid,
            "stock_creator_mchid": str(request.payload.get("stock_creator_mchid")
                                       or self.stock_creator_mchid),
        })
        path = f"/v3/marketing/favor/users/{quote(request.recipient, safe='')}/coupons"
        header = authorization(self._key, mchid=self.mchid, serial_no=self._serial,
                               method="POST", url_path=self._http.endpoint.target(path),
                               body=body.decode("utf-8"), timestamp=int(self._clock()),
                               nonce=_random.token_hex(16).upper())
        out = post(self._http, path, content=body, idempotent=True,
                   headers={"Content-Type": "application/json", "Authorization": header,
                            "X-Zailai-Item-Id": request.item_id})
        if isinstance(out, SendResult):
            return out
        data = out.json()
        if 200 <= out.status < 300:
            if isinstance(data, dict) and data.get("coupon_id"):
                return SendResult(SENT, "OK", "coupon issued", provider_id=str(data["coupon_id"]))
            return SendResult(RETRY, "bad_response", "no coupon_id in a successful reply; "
                              "resending with the same out_request_no is safe")
        if not isinstance(data, dict) or not data.get("code"):
            return http_status_result(out, True)
        code, message = str(data["code"]), str(data.get("message", ""))
        detail = mask(f"HTTP {out.status} {code}: {message}", ())
        if code in TRANSIENT or out.status >= 500 or out.status == 429:
            return SendResult(RETRY, code, detail, retry_after=out.retry_after)
        return SendResult(FAILED, code, detail)

    def close(self) -> None:
        self._http.close()
