"""The secrets store (file, keyring, environment) and the redactor, on real files and processes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from corral.secrets import (
    EnvSecrets,
    FileSecrets,
    KeyringSecrets,
    Redaction,
    Redactor,
    SecretNotFound,
    SecretsError,
    SecretsStore,
    check_secret,
)

ROOT = Path(__file__).resolve().parents[2]
VALUE = "sk-live-Zq8rT2p9"


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


# --- the 0600 file ---------------------------------------------------------------------------


def test_file_is_created_owner_only_and_round_trips(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = FileSecrets(home)

    store.set("API_KEY", VALUE)
    store.set("OTHER", "another-value")

    assert store.get("API_KEY") == VALUE and store.get("MISSING") is None
    assert store.names() == ["API_KEY", "OTHER"]
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert (home.stat().st_mode & 0o777) == 0o700
    assert json.loads(store.path.read_text()) == {"secrets": {"API_KEY": VALUE, "OTHER": "another-value"}, "version": 1}
    assert sorted(p.name for p in home.iterdir()) == [".secrets.json.lock", "secrets.json"], "no temp file left"
    assert store.remove("OTHER") is True and store.remove("OTHER") is False
    assert store.names() == ["API_KEY"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_file_others_could_read_is_refused_with_the_chmod_fix(tmp_path: Path, mode: int) -> None:
    store = FileSecrets(tmp_path)
    store.set("API_KEY", VALUE)
    store.path.chmod(mode)

    with pytest.raises(SecretsError) as caught:
        store.get("API_KEY")

    message = str(caught.value)
    assert f"has mode {mode:04o}, readable by others" in message
    assert f"run `chmod 600 {store.path}`" in message
    assert VALUE not in message


def test_a_file_of_mode_0700_or_0400_is_accepted(tmp_path: Path) -> None:
    store = FileSecrets(tmp_path)
    store.set("API_KEY", VALUE)
    for mode in (0o400, 0o700):
        store.path.chmod(mode)
        assert store.get("API_KEY") == VALUE


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the file to another owner needs root")
def test_a_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    store = FileSecrets(tmp_path)
    store.set("API_KEY", VALUE)
    os.chown(store.path, 65534, 65534)

    with pytest.raises(SecretsError, match="is owned by uid 65534, but corral runs as uid 0; run `chown 0 "):
        store.get("API_KEY")


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    real = FileSecrets(tmp_path / "elsewhere")
    real.set("API_KEY", VALUE)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "secrets.json").symlink_to(real.path)

    with pytest.raises(SecretsError, match="is a symbolic link; replace it with the file itself"):
        FileSecrets(tmp_path / "home").get("API_KEY")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"secrets": {"API_KEY": "sk-live-Zq8rT2p9"', "is not valid JSON"),
        ('["sk-live-Zq8rT2p9"]', "is not a corral secrets file"),
        ('{"secrets": {"API_KEY": 123456789}}', "is not a corral secrets file"),
    ],
)
def test_a_damaged_file_is_refused_without_showing_its_content(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(content)
    path.chmod(0o600)

    with pytest.raises(SecretsError) as caught:
        FileSecrets(tmp_path).names()

    assert message in str(caught.value) and VALUE not in str(caught.value)


_WRITER = """
import sys
from pathlib import Path
from corral.secrets import FileSecrets

store, prefix, count = FileSecrets(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3])
for i in range(count):
    store.set(f"{prefix}_{i % 10}", f"value-{prefix}-{i:06d}")
print("done", flush=True)
"""


def _writer(home: Path, prefix: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(home), prefix, str(count)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def test_readers_never_see_a_partial_file_and_kill_9_leaves_it_whole(tmp_path: Path) -> None:
    store = FileSecrets(tmp_path)
    store.set("SEED_0", "seed-value")
    writer = _writer(tmp_path, "W", 100_000)
    reads = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert "SEED_0" in store.names()  # raises if a read ever saw a torn file
        reads += 1
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    names = store.names()
    assert "SEED_0" in names and any(n.startswith("W_") for n in names), names
    assert reads > 50
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1, "at most the one temp file the killed writer was filling"
    store.set("AFTER", "after-the-kill")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [], "the next write sweeps it"
    assert store.get("AFTER") == "after-the-kill"


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    writers = [_writer(tmp_path, prefix, 60) for prefix in ("A", "B", "C")]
    for writer in writers:
        out, _ = writer.communicate(timeout=30)
        assert out.strip() == "done"

    store = FileSecrets(tmp_path)
    assert store.names() == sorted(f"{p}_{i}" for p in "ABC" for i in range(10))
    assert store.get("B_9") == "value-B-000059"


# --- keyring ---------------------------------------------------------------------------------


def test_without_the_keyring_package_the_store_uses_env_and_file(tmp_path: Path) -> None:
    result = _python(
        f"""
        import sys
        sys.modules["keyring"] = None  # what a missing package looks like to an import
        from pathlib import Path
        from corral.secrets import SecretsStore, detect_keyring
        print(detect_keyring().reason)
        print([b.name for b in SecretsStore.default(Path({str(tmp_path)!r}), {{}}).backends])
        """
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "the keyring package is not installed (pip install keyring)",
        "['env', 'file']",
    ]


def test_the_fail_backend_means_no_keyring(tmp_path: Path) -> None:
    pytest.importorskip("keyring")
    code = f"""
        from pathlib import Path
        from corral.secrets import SecretsStore, detect_keyring
        support = detect_keyring()
        print(support.available, support.backend)
        print([b.name for b in SecretsStore.default(Path({str(tmp_path)!r}), {{}}).backends])
        """
    result = _python(code, env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False keyring.backends.fail.Keyring", "['env', 'file']"]


def test_a_usable_keyring_comes_before_the_file(tmp_path: Path) -> None:
    pytest.importorskip("keyring")
    code = f"""
        from pathlib import Path
        from corral.secrets import SecretsStore, detect_keyring
        store = SecretsStore.default(Path({str(tmp_path)!r}), {{}})
        print(detect_keyring().available, [b.name for b in store.backends])
        print(store.set("API_KEY", "sk-live-Zq8rT2p9"), store.get("API_KEY"), store.list())
        """
    result = _python(code, env={"PYTHON_KEYRING_BACKEND": "tests.confine.helpers.memory_keyring.MemoryKeyring"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True ['env', 'keyring', 'file']",
        f"keyring {VALUE} {{'API_KEY': ['keyring']}}",
    ]
    assert not (tmp_path / "secrets.json").exists()


def test_keyring_backend_keeps_an_index_for_listing() -> None:
    pytest.importorskip("keyring")
    from .helpers.memory_keyring import MemoryKeyring

    backend = MemoryKeyring()
    secrets = KeyringSecrets("corral-test", backend)

    secrets.set("API_KEY", VALUE)
    secrets.set("TOKEN", "token-value-1")

    assert secrets.get("API_KEY") == VALUE and secrets.get("NOPE") is None
    assert secrets.names() == ["API_KEY", "TOKEN"]
    assert backend.passwords[("corral-test", "corral:index")] == '["API_KEY", "TOKEN"]'
    assert secrets.remove("API_KEY") is True and secrets.remove("API_KEY") is False
    assert secrets.names() == ["TOKEN"] and secrets.get("API_KEY") is None
    assert VALUE not in repr(secrets)


# --- the store -------------------------------------------------------------------------------


def test_resolution_order_and_where_values_go(tmp_path: Path) -> None:
    file = FileSecrets(tmp_path)
    file.set("API_KEY", "from-the-file")
    file.set("ONLY_FILE", "only-in-file")
    store = SecretsStore([EnvSecrets({"CORRAL_SECRET_API_KEY": "from-the-env", "PATH": "/usr/bin"}), file])

    assert store.get("API_KEY") == "from-the-env", "the environment overrides stored values"
    assert store.get("ONLY_FILE") == "only-in-file"
    assert store.list() == {"API_KEY": ["env", "file"], "ONLY_FILE": ["file"]}
    assert store.set("NEW_ONE", "new-value-1") == "file"
    assert store.set("NEW_TWO", "new-value-2", backend="file") == "file"
    assert store.remove("API_KEY") == ["file"]
    assert store.get("API_KEY") == "from-the-env"
    assert store.grant(["ONLY_FILE", "NEW_ONE"]) == {"ONLY_FILE": "only-in-file", "NEW_ONE": "new-value-1"}


def test_a_missing_secret_names_where_it_was_looked_for(tmp_path: Path) -> None:
    store = SecretsStore([EnvSecrets({}), FileSecrets(tmp_path)])

    with pytest.raises(SecretNotFound) as caught:
        store.get("API_KEY")

    message = str(caught.value)
    assert "secret 'API_KEY' was not found in EnvSecrets(prefix='CORRAL_SECRET_'), FileSecrets(" in message
    assert "export CORRAL_SECRET_API_KEY" in message


def test_the_environment_is_read_only(tmp_path: Path) -> None:
    store = SecretsStore([EnvSecrets({"CORRAL_SECRET_X_KEY": VALUE})])

    with pytest.raises(SecretsError, match="no writable secrets backend is configured"):
        store.set("API_KEY", VALUE)
    with pytest.raises(SecretsError, match="no writable secrets backend named 'env'"):
        SecretsStore([EnvSecrets({}), FileSecrets(tmp_path)]).set("API_KEY", VALUE, backend="env")
    with pytest.raises(SecretsError, match="set CORRAL_SECRET_API_KEY where the daemon starts"):
        EnvSecrets({}).set("API_KEY", VALUE)


@pytest.mark.parametrize("name", ["1ABC", "API-KEY", "a b", "", "corral:index"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SecretsError, match="is not valid; use letters, digits and underscores"):
        SecretsStore([FileSecrets(tmp_path)]).set(name, VALUE)


def test_short_secrets_are_refused_everywhere(tmp_path: Path) -> None:
    store = SecretsStore([EnvSecrets({"CORRAL_SECRET_PIN": "1234"}), FileSecrets(tmp_path)])
    expected = "secret 'PIN' is 4 characters long; corral refuses secrets shorter than 6"

    with pytest.raises(SecretsError, match=expected):
        store.set("PIN", "1234")
    with pytest.raises(SecretsError, match=expected):
        store.grant(["PIN"])
    redaction = Redaction()
    redaction.add({"PIN": "1234"})
    assert redaction.redact("PIN 1234, at 12:34") == "PIN 1234, at 12:34", "too short to hide from every line"
    check_secret("PIN", "123456")


def test_no_value_appears_in_a_repr(tmp_path: Path) -> None:
    store = SecretsStore([EnvSecrets({"CORRAL_SECRET_API_KEY": VALUE}), FileSecrets(tmp_path)])
    store.set("OTHER", "other-secret-value")

    for text in (repr(store), repr(Redactor({"API_KEY": VALUE})), repr(store.backends)):
        assert VALUE not in text and "other-secret-value" not in text


# --- the redactor ----------------------------------------------------------------------------


def test_every_encoding_of_a_secret_is_redacted() -> None:
    value = 'p@ss w/rd+"é\\x=1'
    redactor = Redactor({"DB_PASSWORD": value})
    forms = {
        "plain": value,
        "url-encoded": quote(value, safe=""),
        "url-encoded path": quote(value),
        "form-encoded": quote_plus(value),
        "json-escaped": json.dumps(value)[1:-1],
        "json-escaped unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "base64": base64.b64encode(value.encode()).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(value.encode()).decode(),
    }
    for label, form in forms.items():
        out = redactor.redact(f"before {form} after")
        assert "[redacted:DB_PASSWORD]" in out, label
        assert form not in out, label


@pytest.mark.parametrize("prefix", ["", "u:", "us:", "user:", "a-longer-user-name:"])
def test_base64_of_a_secret_inside_a_longer_blob_is_redacted(prefix: str) -> None:
    """Basic auth encodes ``user:token``: the token's base64 sits at any of three alignments."""
    token = "ghp_R4nd0mT0k3nValue"
    redactor = Redactor({"TOKEN": token})
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        header = "Authorization: Basic " + encode(f"{prefix}{token}".encode()).decode()

        out = redactor.redact(header)

        before, after = out.removeprefix("Authorization: Basic ").split("[redacted:TOKEN]")
        assert len(before) <= len(prefix) * 4 // 3 + 1 and len(after) <= 4, out


def test_bytes_and_nested_structures_keep_their_shape() -> None:
    redactor = Redactor({"API_KEY": VALUE, "TOKEN": "tok-123456"})
    event = {
        "msg": f"calling with {VALUE}",
        "headers": [("Authorization", f"Bearer {VALUE}"), b"raw tok-123456 bytes"],
        VALUE: {"nested": ["tok-123456", 42, None, 1.5]},
    }

    out = redactor.redact(event)

    assert out == {
        "msg": "calling with [redacted:API_KEY]",
        "headers": [("Authorization", "Bearer [redacted:API_KEY]"), b"raw [redacted:TOKEN] bytes"],
        "[redacted:API_KEY]": {"nested": ["[redacted:TOKEN]", 42, None, 1.5]},
    }
    assert event["msg"] == f"calling with {VALUE}", "the input is not modified"


def test_the_longest_secret_wins_when_one_contains_another() -> None:
    redactor = Redactor({"SHORT": "abcdef", "LONG": "abcdef-ghijkl"})

    assert redactor.redact("x abcdef-ghijkl y abcdef z") == "x [redacted:LONG] y [redacted:SHORT] z"


def test_a_redactor_without_secrets_returns_its_input() -> None:
    redactor = Redactor({})
    line = "nothing to hide"

    assert redactor.redact(line) is line and redactor.redact(b"x") == b"x"


def test_redacting_a_log_line_is_fast() -> None:
    secrets = {f"SECRET_{i}": f"value-{i:03d}-{'x' * 20}/+=" for i in range(20)}
    redactor = Redactor(secrets)
    clean = json.dumps({"event": "model call done", "run": "r-0001", "tokens": 1234, "text": "lorem ipsum " * 25})
    dirty = clean[:-1] + f', "leak": "{secrets["SECRET_7"]}"}}'
    count = 2000

    started = time.perf_counter()
    for _ in range(count):
        redactor.redact(clean)
        redactor.redact(dirty)
    per_line = (time.perf_counter() - started) / (2 * count)

    assert "[redacted:SECRET_7]" in redactor.redact(dirty)
    assert per_line < 200e-6, f"{per_line * 1e6:.1f} µs per line"


def test_log_redaction_hides_secrets_granted_later_in_every_field(tmp_path: Path) -> None:
    from corral.observe.logs import LogFiles

    logs = LogFiles(tmp_path)
    log = logs.logger("a")
    log.info("before", value="tok-123456789")
    logs.redaction.add({"TOKEN": "tok-123456789"})
    logs.redaction.add({"TOKEN": "tok-rotated-99"})  # a rotated value: both stay hidden
    log.info("after", value="k=tok-123456789", nested={"list": ["tok-rotated-99"]})
    try:
        raise RuntimeError("failed with tok-123456789")
    except RuntimeError:
        log.error("crash", exc_info=True)
    logs.close()
    lines = [json.loads(line) for line in (tmp_path / "a.log").read_text().splitlines()]
    assert lines[0]["value"] == "tok-123456789", "nothing granted yet, nothing to hide"
    after = json.dumps(lines[1:])
    assert "tok-123456789" not in after and "tok-rotated-99" not in after
    assert lines[1]["value"] == "k=[redacted:TOKEN]" and lines[1]["nested"] == {"list": ["[redacted:TOKEN]"]}
    assert "redacted:TOKEN" in lines[2]["exception"]
    assert "tok" not in repr(logs.redaction)
