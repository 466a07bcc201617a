"""The built-in file tools, called as functions in a real workdir (the agent's process does the same)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ToolCallError
from corral.plugins import files
from corral.plugins.files import list_files, read_file, search_files, write_file
from corral.tools import spec_for


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workdir as the agent's process has it: the current directory. ``outside`` is its sibling."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("SECRET\n")
    monkeypatch.chdir(workdir)
    return workdir


def outside(work: Path) -> Path:
    return work.parent / "outside"


def test_metadata_of_the_file_tools() -> None:
    flags = {
        f.__name__: (spec_for(f).read_only, spec_for(f).idempotent, spec_for(f).high_stakes)
        for f in (read_file, write_file, list_files, search_files)
    }
    assert flags == {
        "read_file": (True, True, False),
        "write_file": (False, True, False),
        "list_files": (True, True, False),
        "search_files": (True, True, False),
    }
    assert "idempotency_key" not in spec_for(write_file).parameters["properties"]
    assert "settings" not in spec_for(search_files).parameters["properties"]


def test_read_file_returns_text_size_and_truncation(work: Path) -> None:
    (work / "notes.txt").write_text("héllo world\n")
    assert read_file("notes.txt") == {"path": "notes.txt", "content": "héllo world\n", "size": 13, "truncated": False}
    assert read_file("notes.txt", max_bytes=5) == {
        "path": "notes.txt",
        "content": "héll",
        "size": 13,
        "truncated": True,
    }
    assert read_file("notes.txt", max_bytes=100, offset=7)["content"] == "world\n"
    (work / "bin").write_bytes(b"\xff\xfeok")
    assert read_file("bin")["content"] == "\ufffd\ufffdok"


@pytest.mark.parametrize(
    ("args", "kind", "message"),
    [
        ({"path": "../outside/secret.txt"}, "refused", "leads outside"),
        ({"path": "/etc/passwd"}, "refused", "absolute and outside"),
        ({"path": "x", "max_bytes": 0}, "refused", "max_bytes must be from 1 to 1048576"),
        ({"path": "x", "max_bytes": 2_000_000}, "refused", "max_bytes must be"),
        ({"path": "x", "offset": -1}, "refused", "offset must be 0 or more"),
        ({"path": "missing.txt"}, "not_found", "does not exist"),
        ({"path": "folder"}, "failed", "is not a regular file"),
    ],
)
def test_read_file_refusals(work: Path, args: dict[str, Any], kind: str, message: str) -> None:
    (work / "x").write_text("x")
    (work / "folder").mkdir()
    with pytest.raises(ToolCallError, match=message) as caught:
        read_file(**args)
    assert caught.value.kind == kind


def test_read_file_through_symlinks_out_is_refused(work: Path) -> None:
    (work / "link").symlink_to(outside(work) / "secret.txt")
    (work / "dir").symlink_to(outside(work))
    for path in ("link", "dir/secret.txt"):
        with pytest.raises(ToolCallError, match="leads outside"):
            read_file(path)


def test_write_file_creates_folders_and_replaces_atomically(work: Path) -> None:
    assert write_file("out/report.md", "# one\n", idempotency_key="k1") == {
        "path": "out/report.md",
        "bytes_written": 6,
        "size": 6,
    }
    write_file("out/report.md", "# two\n", idempotency_key="k2")
    assert (work / "out" / "report.md").read_text() == "# two\n"
    assert sorted(p.name for p in (work / "out").iterdir()) == ["report.md"], "no temporary file left behind"


def test_write_file_append_happens_once_per_call_even_when_repeated(work: Path) -> None:
    write_file("log.txt", "first\n", idempotency_key="a", append=True)
    write_file("log.txt", "second\n", idempotency_key="b", append=True)
    again = write_file("log.txt", "second\n", idempotency_key="b", append=True)  # the same call, rerun after a crash
    assert (work / "log.txt").read_text() == "first\nsecond\n"
    assert again == {"path": "log.txt", "bytes_written": 7, "size": 13}
    write_file("./log.txt", "third\n", idempotency_key="c", append=True)
    write_file("log.txt", "third\n", idempotency_key="c", append=True)
    assert (work / "log.txt").read_text() == "first\nsecond\nthird\n", "the same file under another spelling"


def test_write_file_append_rerun_after_a_torn_write_repairs_it(work: Path) -> None:
    write_file("log.txt", "first\n", idempotency_key="a", append=True)
    write_file("log.txt", "second\n", idempotency_key="b", append=True)
    with open(work / "log.txt", "r+") as f:  # a crash mid-append left half of it
        f.truncate(len("first\nsec"))
    write_file("log.txt", "second\n", idempotency_key="b", append=True)
    assert (work / "log.txt").read_text() == "first\nsecond\n"


def test_write_file_never_writes_outside(work: Path) -> None:
    out = outside(work)
    (work / "dangling").symlink_to(out / "created.txt")
    (work / "dir").symlink_to(out)
    (work / "file_link").symlink_to(out / "secret.txt")
    for path in ("dangling", "dir/new.txt", "file_link", "../outside/new.txt", str(out / "abs.txt"), "dangling/x"):
        for append in (False, True):
            with pytest.raises(ToolCallError) as caught:
                write_file(path, "pwned", idempotency_key="k", append=append)
            assert caught.value.kind == "refused", path
    try:
        os.link(out / "secret.txt", work / "hard")
    except OSError:
        pass
    else:
        with pytest.raises(ToolCallError, match="other hard links"):
            write_file("hard", "pwned", idempotency_key="k", append=True)
        write_file("hard", "replaced", idempotency_key="k2")  # a rename replaces the link, not the file
        assert (work / "hard").read_text() == "replaced"
    assert sorted(p.name for p in out.iterdir()) == ["secret.txt"]
    assert (out / "secret.txt").read_text() == "SECRET\n"


def test_write_file_onto_a_folder_fails_clearly(work: Path) -> None:
    (work / "folder").mkdir()
    with pytest.raises(ToolCallError, match="is a folder"):
        write_file("folder", "x", idempotency_key="k")
    assert list((work / "folder").iterdir()) == []


def test_list_files(work: Path) -> None:
    (work / "a.md").write_text("aa")
    (work / "b.txt").write_text("b")
    (work / "sub").mkdir()
    (work / "sub" / "c.md").write_text("ccc")
    (work / "out").symlink_to(outside(work))
    write_file("log.txt", "x", idempotency_key="k", append=True)  # makes .corral/, which is not listed
    (work / ".tmp").mkdir()  # the agent's TMPDIR, not its work: not listed either
    (work / ".tmp" / "scratch").write_text("s")
    top = list_files()
    assert top["path"] == "." and top["truncated"] is False
    assert [(e["path"], e["type"]) for e in top["entries"]] == [
        ("a.md", "file"),
        ("b.txt", "file"),
        ("log.txt", "file"),
        ("out", "symlink"),
        ("sub", "folder"),
    ]
    assert top["entries"][0]["size"] == 2
    assert [e["path"] for e in list_files(pattern="*.md", recursive=True)["entries"]] == ["a.md", "sub/c.md"]
    assert not [e for e in list_files(recursive=True)["entries"] if ".tmp" in e["path"]]
    assert [e["path"] for e in list_files("sub")["entries"]] == ["sub/c.md"]
    with pytest.raises(ToolCallError, match="leads outside"):
        list_files("out")
    with pytest.raises(ToolCallError, match="is a file, not a folder"):
        list_files("a.md")


def test_list_files_is_capped(work: Path) -> None:
    for i in range(files.LIST_MAX + 5):
        (work / f"f{i:04}").touch()
    listed = list_files()
    assert len(listed["entries"]) == files.LIST_MAX and listed["truncated"] is True


def test_search_files_plain_regex_and_case(work: Path) -> None:
    (work / "a.txt").write_text("alpha\nBeta gamma\nbeta\n")
    (work / "sub").mkdir()
    (work / "sub" / "b.md").write_text("nothing\nbeta max\n")
    (work / "blob.bin").write_bytes(b"beta\x00beta")
    (work / "out").symlink_to(outside(work))
    (work / "linked.txt").symlink_to(work / "a.txt")
    plain = search_files("beta", settings={})
    assert plain == {
        "matches": [
            {"path": "a.txt", "line": 3, "text": "beta"},
            {"path": "sub/b.md", "line": 2, "text": "beta max"},
        ],
        "truncated": False,
    }
    assert len(search_files("BETA", settings={}, ignore_case=True)["matches"]) == 3
    assert search_files(r"^b\w+ max$", settings={}, regex=True)["matches"] == [
        {"path": "sub/b.md", "line": 2, "text": "beta max"}
    ]
    assert search_files("beta", settings={}, path="sub/b.md")["matches"] == [
        {"path": "sub/b.md", "line": 2, "text": "beta max"}
    ]
    assert search_files("SECRET", settings={})["matches"] == [], "symlinks out are not followed"
    limited = search_files("a", settings={}, max_results=2)
    assert len(limited["matches"]) == 2 and limited["truncated"] is True


def test_search_files_refusals_and_time_limit(work: Path) -> None:
    (work / "a.txt").write_text("a" * 40 + "!\n")
    with pytest.raises(ToolCallError, match="not a valid regular expression") as caught:
        search_files("(unclosed", settings={}, regex=True)
    assert caught.value.kind == "refused"
    with pytest.raises(ToolCallError, match="pattern is empty"):
        search_files("", settings={})
    with pytest.raises(ToolCallError, match="max_results must be from 1 to 1000"):
        search_files("a", settings={}, max_results=0)
    with pytest.raises(ToolCallError, match="leads outside"):
        search_files("SECRET", settings={}, path="../outside")
    with pytest.raises(ToolCallError, match="took longer than 0.2 s") as slow:
        search_files(r"(a|aa)+$", settings={"max_seconds": 0.2}, regex=True)  # backtracks exponentially
    assert slow.value.kind == "timeout"
    with pytest.raises(ToolCallError, match="max_seconds = 0 must be a number above 0"):
        search_files("a", settings={"max_seconds": 0})
