"""The one path helper: every way out of the workdir is refused, with a message the model can act on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from corral.errors import ToolCallError
from corral.sandbox.paths import inside_workdir, open_inside, open_parent


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workdir and, beside it, an outside folder holding a secret."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("SECRET")
    (work / "notes").mkdir()
    (work / "notes" / "a.txt").write_text("inside")
    return work, outside


def refused(message: str) -> pytest.RaisesContext[ToolCallError]:
    return pytest.raises(ToolCallError, match=message)


def test_plain_relative_and_absolute_inside_paths_resolve(layout: tuple[Path, Path]) -> None:
    work, _ = layout
    real = work.resolve()
    assert inside_workdir("notes/a.txt", work) == real / "notes" / "a.txt"
    assert inside_workdir("notes/../notes/a.txt", work) == real / "notes" / "a.txt", "`..` that stays inside is fine"
    assert inside_workdir(str(real / "notes" / "a.txt"), work) == real / "notes" / "a.txt"
    assert inside_workdir("new/file.txt", work) == real / "new" / "file.txt", "it need not exist yet"
    assert inside_workdir(".", work) == real


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside/secret", "leads outside the agent's workdir"),
        ("notes/../../outside/secret", "leads outside"),
        ("..", "leads outside"),
        ("/etc/passwd", "is absolute and outside the agent's workdir"),
        ("a\x00b", "NUL byte"),
    ],
)
def test_escapes_by_name_are_refused(layout: tuple[Path, Path], path: str, message: str) -> None:
    work, _ = layout
    with refused(message) as caught:
        inside_workdir(path, work)
    assert caught.value.kind == "refused"


def test_symlinks_that_lead_out_are_refused_whatever_their_shape(layout: tuple[Path, Path]) -> None:
    work, outside = layout
    (work / "dir_out").symlink_to(outside)
    (work / "file_out").symlink_to(outside / "secret")
    (work / "relative_up").symlink_to("..")
    (work / "dangling_out").symlink_to(outside / "not-yet")
    (work / "notes" / "chain").symlink_to("../dir_out")
    for path in ("dir_out/secret", "file_out", "relative_up/outside/secret", "dangling_out", "notes/chain/secret"):
        with refused("leads outside"):
            inside_workdir(path, work)
        with refused("leads outside"):
            open_inside(path, os.O_RDONLY, workdir=work)


def test_writing_through_a_dangling_symlink_out_creates_nothing_outside(layout: tuple[Path, Path]) -> None:
    work, outside = layout
    (work / "trap").symlink_to(outside / "created")
    (work / "trapdir").symlink_to(outside / "newdir")
    with refused("leads outside"):
        open_inside("trap", os.O_WRONLY | os.O_CREAT, workdir=work)
    with refused("leads outside"):
        open_parent("trapdir/file", workdir=work, make_parents=True)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_symlinks_that_stay_inside_are_followed(layout: tuple[Path, Path]) -> None:
    work, _ = layout
    (work / "alias").symlink_to("notes")
    fd = open_inside("alias/a.txt", workdir=work)
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_open_parent_creates_missing_folders_inside_only(layout: tuple[Path, Path]) -> None:
    work, _ = layout
    fd, name = open_parent("deep/er/file.txt", workdir=work, make_parents=True)
    os.close(fd)
    assert name == "file.txt" and (work / "deep" / "er").is_dir()
    with pytest.raises(ToolCallError, match="does not exist") as caught:
        open_parent("missing/file.txt", workdir=work)
    assert caught.value.kind == "not_found"
    with refused("is the workdir itself"):
        open_parent(".", workdir=work)


def test_hard_links_are_refused(layout: tuple[Path, Path]) -> None:
    work, outside = layout
    try:
        os.link(outside / "secret", work / "linked")
    except OSError as exc:
        pytest.skip(f"cannot make a hard link here: {exc}")
    with refused("other hard links"):
        open_inside("linked", os.O_RDONLY, workdir=work)
    with refused("other hard links"):
        open_inside("linked", os.O_WRONLY | os.O_APPEND, workdir=work)
    assert (outside / "secret").read_text() == "SECRET"


def test_the_workdir_itself_opens_as_a_folder(layout: tuple[Path, Path]) -> None:
    work, _ = layout
    fd = open_inside(".", os.O_RDONLY | os.O_DIRECTORY, workdir=work)
    try:
        assert "notes" in os.listdir(fd)
    finally:
        os.close(fd)


def test_a_folder_swapped_for_a_symlink_out_during_opens_never_leaks(layout: tuple[Path, Path]) -> None:
    """The race the descriptor walk exists for: check, swap, open. The swap may make an
    open fail, but no open may ever read the file outside."""
    work, outside = layout
    (outside / "a.txt").write_text("SECRET")
    stop = threading.Event()

    def swap() -> None:
        real, parked, link = work / "notes", work / "parked", work / "swap"
        link.symlink_to(outside)
        while not stop.is_set():
            os.rename(real, parked)
            os.rename(link, real)  # notes -> outside
            os.rename(real, link)
            os.rename(parked, real)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: set[bytes] = set()
    try:
        for _ in range(1000):
            try:
                fd = open_inside("notes/a.txt", workdir=work)
            except ToolCallError:
                seen.add(b"refused")
                continue
            try:
                seen.add(os.read(fd, 100))
            finally:
                os.close(fd)
    finally:
        stop.set()
        swapper.join()
    assert b"SECRET" not in seen
    assert b"inside" in seen
