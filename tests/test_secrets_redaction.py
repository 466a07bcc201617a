"""The one Secret type never shows its value, and the one redactor's escaped-form pattern and
field names: every %-encoding, backslash escape and character reference of a granted
secret, whole, partial or mixed, is replaced with ``[redacted:NAME]``; near misses are not;
keys are redacted without losing a field."""

from __future__ import annotations

import copy
import json
import pickle
import random
import time
import types
from pathlib import Path
from urllib.parse import quote, quote_plus

import msgpack
import pytest

from corral.config import parse_config
from corral.observe.logs import LogFiles
from corral.packing import pack
from corral.secrets import PLACEHOLDER, Redaction, Redactor, Secret, placeholder, secrets_in

SECRET = 'p@ss w/rd+"é\\x=1😀'
"""Space, slash, quote, backslash, a two-byte and a four-byte character (a surrogate pair in JSON)."""
TOKEN = "sk-live-Zq8rT2p9"
PW_SHOWN = "[redacted:PW]"


def percent(text: str, case: str = "X") -> str:
    return "".join(f"%{byte:02{case}}" for byte in text.encode())


def u_escape(char: str) -> str:
    return json.dumps(char)[1:-1] if ord(char) > 0xFFFF else f"\\u{ord(char):04x}"


ENCODINGS = {
    "plain": SECRET,
    "%-encoded, upper hex": percent(SECRET),
    "%-encoded, lower hex": percent(SECRET, "x"),
    "every other character %-encoded": "".join(percent(c) if i % 2 else c for i, c in enumerate(SECRET)),
    "%-encoded twice": quote(quote(SECRET, safe=""), safe=""),
    "%-encoded three times": quote(quote(quote(SECRET, safe=""), safe=""), safe=""),
    "quote_plus": quote_plus(SECRET),
    "\\u for every character": "".join(u_escape(c) for c in SECRET),
    "\\u with upper hex": "".join(u_escape(c).upper().replace("\\U", "\\u") for c in SECRET),
    "\\U for every character": "".join(f"\\U{ord(c):08x}" for c in SECRET),
    "\\u{...}": "".join(f"\\u{{{ord(c):x}}}" for c in SECRET),
    "JSON ensure_ascii": json.dumps(SECRET)[1:-1],
    "JSON with \\/": json.dumps(SECRET).replace("/", "\\/")[1:-1],
    "JSON ensure_ascii=False": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "JSON inside JSON": json.dumps(json.dumps(SECRET)[1:-1])[1:-1],
    "Python unicode_escape": SECRET.encode("unicode_escape").decode(),
    "Python bytes repr": repr(SECRET.encode())[2:-1].replace("\\\\", "\\"),
    "\\ written %5C": "".join(f"%5Cu{ord(c):04x}" if ord(c) <= 0xFFFF else c for c in SECRET),
    "HTML decimal references": "".join(f"&#{ord(c)};" for c in SECRET),
    "HTML hex references": "".join(f"&#x{ord(c):X};" for c in SECRET),
    "HTML named references": SECRET.replace('"', "&quot;"),
}


# --- the Secret type ---------------------------------------------------------------------------


def test_a_secret_shows_only_its_placeholder_and_cannot_be_packed_or_pickled() -> None:
    secret = Secret(TOKEN, "OPENAI_API_KEY")
    shown = "[redacted:OPENAI_API_KEY]"

    for text in (
        str(secret),
        f"{secret}",
        "%s" % (secret,),  # noqa: UP031 (the %-operator is what is tested)
        format(secret, ""),
        json.dumps({"k": secret}, default=str),
    ):
        assert TOKEN not in text and shown in text
    assert repr(secret) == f"Secret('{shown}')" and f"{secret!r}" == repr(secret) and secret.placeholder == shown
    assert f"{secret:>30}" == f"{shown:>30}"
    for refuse in (pickle.dumps, json.dumps, msgpack.packb, pack):
        with pytest.raises(TypeError):
            refuse(secret)
    assert secret.reveal() == TOKEN
    assert secret == Secret(TOKEN, "OPENAI_API_KEY") and secret != Secret(TOKEN) and secret != Secret("other", "x")
    assert copy.deepcopy(secret) is secret and copy.copy(secret) is secret
    with pytest.raises(AttributeError):
        secret.name = "X"  # type: ignore[misc]
    with pytest.raises(ValueError, match="non-empty"):
        Secret("")
    assert Secret(TOKEN, "a [b]\n").placeholder == "[redacted:a__b__]"
    assert str(Secret(TOKEN)) == "[redacted:secret]", "a plugin's own Secret(value) has a default name"


def test_a_name_is_made_showable_so_every_placeholder_has_the_one_form() -> None:
    for name in ("GITHUB_TOKEN", "alerts.sinks.ops mail.headers.X-Key", "a[b]", "tab\there", "", "é" * 300):
        assert PLACEHOLDER.fullmatch(Secret(TOKEN, name).placeholder), name
        assert PLACEHOLDER.fullmatch(placeholder(name)), name


def test_a_loaded_configs_credentials_are_found_wherever_they_are_kept(tmp_path: Path) -> None:
    environ = {
        "MODEL_KEY": "sk-model-123456",
        "HOOK": "https://example.com/hook/abcdef",
        "PING": "https://hc.example/x1",
    }
    config = parse_config(
        {
            "models": {
                "m": {
                    "provider": "openai",
                    "base_url": "http://127.0.0.1:1/v1",
                    "model": "x",
                    "api_key_env": "MODEL_KEY",
                }
            },
            "alerts": {
                "sinks": {"ops": {"type": "webhook", "url_env": "HOOK", "headers": {"Authorization": "inline-token"}}},
                "deadman": {"url_env": "PING"},
            },
        },
        tmp_path / "corral.toml",
        environ,
    )

    found = {(secret.name, secret.reveal()) for secret in secrets_in(config)}

    assert found == {(name, environ[name]) for name in environ}, "inline sink keys are known only to the sink's type"


# --- the redactor ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor({"PW": SECRET, "TOKEN": TOKEN})


@pytest.mark.parametrize("label", ENCODINGS)
def test_every_encoding_is_replaced_whole(redactor: Redactor, label: str) -> None:
    form = ENCODINGS[label]
    assert form != SECRET or label == "plain"

    assert redactor.redact(f"before <{form}> after") == f"before <{PW_SHOWN}> after"


@pytest.mark.parametrize("label", ENCODINGS)
def test_every_encoding_is_replaced_in_bytes_too(redactor: Redactor, label: str) -> None:
    form = ENCODINGS[label].encode()

    assert redactor.redact(b"<" + form + b">") == f"<{PW_SHOWN}>".encode()


def test_in_bytes_any_byte_of_a_character_may_be_literal_or_encoded(redactor: Redactor) -> None:
    """é is C3 A9: the first byte written as is, the second %-encoded, and the reverse."""
    head, tail = SECRET.encode().split("é".encode())
    for middle in (b"\xc3%A9", b"%c3\xa9"):
        assert redactor.redact(b"<" + head + middle + tail + b">") == f"<{PW_SHOWN}>".encode()


WAYS = (
    lambda c: c,
    percent,
    lambda c: percent(c, "x"),
    u_escape,
    lambda c: f"\\U{ord(c):08X}",
    lambda c: f"&#{ord(c)};",
    lambda c: f"&#x{ord(c):x};",
    lambda c: f"\\x{ord(c):02x}" if ord(c) <= 0xFF else c,
    lambda c: "".join(f"\\x{byte:02x}" for byte in c.encode()),
)


@pytest.mark.parametrize("value", [SECRET, TOKEN, "ключ-доступа-42", "a&b<c>d'e%f\\g"])
def test_any_mix_of_ways_character_by_character(value: str) -> None:
    redactor = Redactor({"MIX": value})
    rng = random.Random(value)
    for _ in range(150):
        form = "".join(rng.choice(WAYS)(c) for c in value)
        assert redactor.redact(f"<{form}>") == "<[redacted:MIX]>", form
        assert redactor.redact(f"<{form}>".encode()) == b"<[redacted:MIX]>", form


@pytest.mark.parametrize(
    "near",
    [
        percent(TOKEN)[:-1] + "0",  # the last byte is %30, not %39
        "".join(u_escape(c) for c in TOKEN[:-1]),  # one character short
        TOKEN[:-1] + "%3A",
        "\\u0073k-live-Zq8rT2p8",
        "&#115;k-live-Zq8rT2p",
        percent(TOKEN.upper()),
    ],
)
def test_a_near_miss_is_left_alone(redactor: Redactor, near: str) -> None:
    assert redactor.redact(f"<{near}>") == f"<{near}>"


def test_text_full_of_escapes_but_no_secret_is_unchanged(redactor: Redactor) -> None:
    text = 'https://example.com/a%20b?q=%41%42&x=1 \\u0041\\n\\"quoted\\" &amp; &#65; ' * 20

    assert redactor.redact(text) == text


def test_the_longest_secret_wins_in_escaped_forms_too() -> None:
    redactor = Redactor({"SHORT": "abcdef", "LONG": "abcdef-ghijkl"})

    out = redactor.redact(f"x {percent('abcdef-ghijkl')} y %61bcdef z")

    assert out == "x [redacted:LONG] y [redacted:SHORT] z"


def test_grants_added_later_keep_their_own_names_and_the_longest_still_wins() -> None:
    redaction = Redaction()
    redaction.add({"LONG": "abcdefghijklmnop" * 4})
    redaction.add({"OTHER": "qrstuvwxyz012345"})
    redaction.add({"INNER": "abcdefghijklmnop" * 2})  # inside LONG: compiled again with it

    out = redaction.redact(
        f"{percent('a')}bcdefghijklmnop{'abcdefghijklmnop' * 3} q%72stuvwxyz012345 ab%63defghijklmnop"
        + "abcdefghijklmnop"
    )

    assert out == "[redacted:LONG] [redacted:OTHER] [redacted:INNER]"


# --- field names -----------------------------------------------------------------------------


def test_keys_are_redacted_at_every_depth_and_a_clash_loses_no_field(redactor: Redactor) -> None:
    event = {
        SECRET: 1,
        PW_SHOWN: 2,
        percent(SECRET): 3,
        "nested": [{TOKEN: {ENCODINGS["JSON ensure_ascii"]: "deep"}}],
        7: "an int key",
        (TOKEN, 1): "a tuple key",
    }

    out = redactor.redact(event)

    assert out == {
        f"{PW_SHOWN} (2)": 1,
        PW_SHOWN: 2,
        f"{PW_SHOWN} (3)": 3,
        "nested": [{"[redacted:TOKEN]": {PW_SHOWN: "deep"}}],
        7: "an int key",
        ("[redacted:TOKEN]", 1): "a tuple key",
    }
    assert SECRET in event, "the input is not modified"


def test_sets_and_other_mappings_are_redacted(redactor: Redactor) -> None:
    out = redactor.redact({"s": {TOKEN, "x"}, "f": frozenset({TOKEN}), "m": types.MappingProxyType({TOKEN: TOKEN})})

    assert out == {
        "s": {"[redacted:TOKEN]", "x"},
        "f": frozenset({"[redacted:TOKEN]"}),
        "m": {"[redacted:TOKEN]": "[redacted:TOKEN]"},
    }


def test_the_log_files_hold_no_secret_as_a_field_name_value_or_object(tmp_path: Path) -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder({percent(SECRET)})"

    with LogFiles(tmp_path) as logs:
        logs.redaction.add({"PW": SECRET})
        log = logs.logger("agent")
        log.info("named", **{SECRET: 1, ENCODINGS["\\u for every character"]: 2})
        log.info("object", held=Holder(), many=[Holder()])
    raw = (tmp_path / "agent.log").read_bytes()
    events = [json.loads(line) for line in raw.splitlines()]

    for form in ENCODINGS.values():
        assert form.encode() not in raw and json.dumps(form)[1:-1].encode() not in raw
    assert events[0][PW_SHOWN] in (1, 2) and events[0][f"{PW_SHOWN} (2)"] in (1, 2)
    assert events[1]["held"] == f"Holder({PW_SHOWN})" and events[1]["many"] == [f"Holder({PW_SHOWN})"]


# --- credentials that are not granted secrets --------------------------------------------


def test_model_errors_and_alert_sinks_hide_their_credential_in_the_same_forms() -> None:
    from corral.models.errors import redact

    key = "sk-ant-api03-AbC/dEf+123"
    mixed = "sk-%61nt-api03-\\u0041bC\\/dEf%2B123"
    sink = Redactor([Secret(key, "alerts.sinks.ops.token"), Secret("ab", "alerts.sinks.ops.user")])

    shown = "[redacted:ANTHROPIC_API_KEY]"
    assert redact(f"401 for {mixed}: {percent(key)}", Secret(key, "ANTHROPIC_API_KEY")) == f"401 for {shown}: {shown}"
    assert redact("echoed sk-proj-****abcd", None) == "echoed [redacted:api_key]", "a masked key: not even that"
    assert sink.redact(f"posting to {mixed} failed") == "posting to [redacted:alerts.sinks.ops.token] failed"
    assert sink.redact("a short one: ab, and %61b") == "a short one: [redacted:alerts.sinks.ops.user], and %61b", (
        "short: only as written"
    )


@pytest.mark.parametrize("value", [TOKEN, 'a\\\\\\b%%c&&d  e"f'])
@pytest.mark.parametrize("run", ["\\", "%25", "\\%5C", "%", "&#0", "+ ", "\\u00"])
def test_a_long_run_of_escape_characters_costs_linear_time(value: str, run: str) -> None:
    """An agent writes the text: 60 KB of backslashes must not hold the daemon for seconds."""
    redactor = Redactor({"S": value})
    text = run * (60_000 // len(run))

    started = time.perf_counter()
    redactor.redact(text)
    redactor.redact(text.encode())

    assert time.perf_counter() - started < 1.0


def test_a_secret_made_a_number_is_still_found() -> None:
    """An agent's int(os.environ["PIN"]) or float(...) in a log field, its state or result."""
    redactor = Redactor({"PIN": "8374926155", "FLT": "3.14159265358"})
    value = {"pin": 8374926155, "f": 3.14159265358, "nested": {"p": [8374926155]}, "n": 42, "ok": True}
    assert redactor.redact(value) == {
        "pin": "[redacted:PIN]",
        "f": "[redacted:FLT]",
        "nested": {"p": ["[redacted:PIN]"]},
        "n": 42,
        "ok": True,
    }
    assert redactor.redact_event({"event": "x", "pin": 8374926155})["pin"] == "[redacted:PIN]"


class _Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append({"event": event, **fields})

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append({"event": event, **fields})


@pytest.mark.parametrize(
    "writes",
    [
        [b"X" * 65534 + b"tok_a24687b8e5ba20d87491 tail\n"],  # a cut inside one read
        [b"Z" * 4100 + b"tok_a2", b"4687b8e5ba20d87491 end\n"],  # across two writes
        [b"Y" * 4088 + b"tok_a24687b8e5ba20d87491\n"],  # the line's own cut
        [b"Y" * (4097 - 24) + b"tok_a24687b8e5ba20d87491\n"],
    ],
)
def test_no_part_of_a_secret_in_stdout_is_logged_wherever_the_line_is_cut(writes: list[bytes]) -> None:
    """Agent output is redacted whole before it is cut, and what follows a forced cut of an
    over-long line is never logged as a line of its own."""
    import asyncio

    from corral.run.output import RateLimit, pump

    token = "tok_a24687b8e5ba20d87491"
    redactor = Redactor({"TOKEN": token})
    log = _Lines()

    async def go() -> None:
        stream = asyncio.StreamReader()
        for write in writes:
            stream.feed_data(write)
        stream.feed_eof()
        await pump(stream, "stdout", log, RateLimit(), redactor.redact_text)

    asyncio.run(go())
    logged = json.dumps(log.lines)
    for start in range(len(token) - 5):
        assert token[start : start + 6] not in logged, (token[start : start + 6], logged[-300:])
