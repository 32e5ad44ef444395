"""Every diagnostic code `engine validate` can report, with its severity and a summary.

Codes are stable: CI scripts, `allow:` entries and docs/validate.md refer to them. A test
checks that every code here is documented and that nothing reports a code missing here.
"""
from __future__ import annotations

from .errors import Severity

E, W = Severity.ERROR, Severity.WARNING

CODES: dict[str, tuple[Severity, str]] = {
    # files and YAML
    "FILE_ENCODING": (E, "file is not UTF-8"),
    "YAML_SYNTAX": (E, "the file is not valid YAML"),
    "YAML_DUPLICATE_KEY": (E, "a key appears twice in one mapping"),
    "YAML_TAG": (E, "an explicit YAML tag (e.g. !!python/object) is not allowed"),
    "YAML_KEY": (E, "a mapping key is not a plain string"),
    "YAML_TOO_DEEP": (E, "the document is nested too deeply"),
    "YAML_TOO_LARGE": (E, "the document has too many nodes (alias bomb)"),
    "EMPTY_FILE": (W, "a rule file is empty"),
    # JSON Schema
    "SCHEMA_UNKNOWN_KEY": (E, "a key the format does not have (did-you-mean offered)"),
    "SCHEMA_REQUIRED": (E, "a required key is missing"),
    "SCHEMA_TYPE": (E, "a value has the wrong type"),
    "SCHEMA_ENUM": (E, "a value is not one of the allowed words"),
    "SCHEMA_PATTERN": (E, "a value or name does not have the required form"),
    "SCHEMA_SHAPE": (E, "an action is not a mapping with exactly one key"),
    "SCHEMA_VALUE": (E, "a value is out of range or otherwise invalid"),
    # literals in config and rules
    "BAD_DURATION": (E, "a duration does not parse (use 30s, 15m, 2h, 1h30m, 7d, 2w)"),
    "BAD_CRON": (E, "a cron schedule does not parse"),
    "SHORT_EVERY": (W, "an `every:` schedule is shorter than a minute (meant for tests)"),
    "BAD_TIME": (E, "a clock time is not HH:MM"),
    "BAD_TIMEZONE": (E, "an unknown IANA timezone"),
    "BAD_PERCENT": (E, "a percentage is not between 0% and 100%"),
    "BAD_MONEY": (E, "an amount has more than 2 decimals"),
    "BAD_TYPE": (E, "a data model type is not one of the supported types"),
    "RESERVED_NAME": (E, "a data model declares a built-in field"),
    "UNKNOWN_CHANNEL_TYPE": (E, "a channel's type is unknown"),
    # the condition language
    "COND_SYNTAX": (E, "a condition does not parse"),
    "COND_TOO_LONG": (E, "a condition is longer than 4,096 characters"),
    "COND_TOO_DEEP": (E, "a condition is nested deeper than 32 levels"),
    "COND_UNKNOWN_NAME": (E, "a name in a condition is not declared"),
    "COND_UNKNOWN_FUNCTION": (E, "a function in a condition does not exist"),
    "COND_UNKNOWN_VALUE": (E, "a string compared with a field is not one of its values"),
    "COND_TYPE": (E, "a condition mixes types that do not go together"),
    "COND_NOT_BOOL": (E, "a condition is not true/false"),
    "COND_NULL_COMPARE": (E, "`== null` is never true; use `is null`"),
    "COND_ARGUMENTS": (E, "a function got the wrong arguments"),
    "COND_BAD_LITERAL": (E, "a date, timestamp or duration literal does not parse"),
    "COND_EVENT_CONTEXT": (E, "`event.x` used in a rule without an event trigger"),
    "COND_NESTED": (E, "an aggregate inside an aggregate's `where`"),
    # rule structure and references
    "TRIGGER_KIND": (E, "a trigger names no kind, two kinds, or a modifier of another kind"),
    "UNKNOWN_EVENT": (E, "an event type not declared in datamodel.yaml"),
    "UNKNOWN_ATTRIBUTE": (E, "a user attribute not declared in datamodel.yaml"),
    "UNKNOWN_TEMPLATE": (E, "a subscription template not declared in templates.yaml"),
    "UNKNOWN_COUPON": (E, "a coupon stock not declared in coupons.yaml"),
    "UNKNOWN_CHANNEL": (E, "a channel not configured in engine.yaml"),
    "BAD_CHANNEL": (E, "a channel that cannot carry this action"),
    "DUPLICATE_RULE_ID": (E, "two rules share an id"),
    "DUPLICATE_VARIANT": (E, "two experiment variants share a name"),
    "TEMPLATE_REQUIRED": (E, "a wechat_subscribe message without `template` or `data`"),
    "TEXT_REQUIRED": (E, "a text channel (sms, wecom, console, webhook) without `text`"),
    "TEMPLATE_KEYS": (E, "subscription data keys differ from the template's keywords"),
    "KEYWORD_LIMIT": (E, "a value breaks WeChat's limit for its keyword type"),
    "TEMPLATE_SYNTAX": (E, "a message template does not parse (Jinja2)"),
    "TEMPLATE_UNDEFINED": (E, "a message template uses a name that is not available"),
    "LONG_TERM_MARKETING": (W, "a long-term subscription template used for marketing"),
    "NO_LIMITS": (W, "a marketing rule without per-user `limits`"),
    # compliance (WeChat platform rules, advertising law, PIPL)
    "FORCED_SHARE": (E, "copy that forces or induces sharing"),
    "SOCIAL_CASH_REWARD": (E, "a cash or red-packet reward conditioned on sharing"),
    "MOMENTS_REWARD": (E, "a reward that can be earned by sharing to 朋友圈 (moments)"),
    "SHARE_REWARD_NO_PARTICIPATION": (W, "a coupon or points for a share without a recipient-"
                                         "participation condition"),
    "FALSE_CLAIM": (E, "a false or guaranteed-win claim (100%中奖, 稳赚)"),
    "ABSOLUTE_TERM": (W, "an advertising-law absolute term (最佳, 第一, 唯一, 全网最 ...)"),
    "PII_IN_MESSAGE": (E, "a PII field rendered into a message"),
    "SMS_NO_OPT_OUT": (E, "a marketing SMS without an opt-out (回T退订)"),
    # allow entries
    "ALLOW_ERROR": (E, "an `allow:` entry names an error; only warnings can be accepted"),
    "ALLOW_UNKNOWN": (E, "an `allow:` entry names a check that does not exist"),
    "ALLOW_UNUSED": (W, "an `allow:` entry that accepted nothing"),
    # rule tests
    "UNKNOWN_RULE": (E, "a rule test names a rule that does not exist"),
    "TEST_SHAPE": (E, "a rule test needs `at` and `expect`, or `steps`, and not both"),
    "BAD_TIMESTAMP": (E, "a timestamp in a rule test is not ISO 8601"),
    "UNKNOWN_REASON": (E, "a rule test expects a suppression reason the engine does not have"),
    "UNKNOWN_VARIANT": (E, "a rule test expects a variant the rule does not have"),
    "TEST_ROW_REJECTED": (E, "a user or event in a rule test fails the data model's row checks"),
}


def severity(code: str) -> Severity:
    return CODES[code][0] if code in CODES else Severity.ERROR
