"""Private by default: the data dir 0700 and its files 0600 whatever the
umask, a data dir others can write refused at start, and the lock out of
reach of users who cannot write the data."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock, need
from tests.live.server import VALHALLA
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.storage.errors import StorageUnavailableError
from valhalla_gov.storage.json_backend import LOCK_FILE

NOBODY = 65534
# The other user runs the system's Python: the venv's may live where
# nobody can reach it (under /root).
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A parent dir everyone may traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="valhalla-private-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_is_private_under_umask_022(
    tmp_path: Path, clock: FakeClock, umask_022: None
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    store = open_json(data_dir)
    set_cone_state(store=store, band="C", reason="r", metrics=None, actor="a", clock=clock)
    create_token(store=store, name="ops", scopes=["owner"], actor="a", clock=clock)
    assert _mode(data_dir) == 0o700
    files = [p for p in data_dir.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"cone_state.json", "audit.log", "tokens.json", LOCK_FILE}
    for path in files:
        assert _mode(path) == 0o600, path.name


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777, 0o1777])
def test_a_data_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(mode)
    with pytest.raises(StorageUnavailableError, match=f"chmod og-w {data_dir}"):
        open_json(data_dir)


def test_serve_refuses_such_a_data_dir_with_the_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    result = subprocess.run(
        [VALHALLA, "serve", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert f"chmod og-w {data_dir}" in result.stderr


def test_a_readable_data_dir_of_an_older_version_still_opens(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / LOCK_FILE).touch(mode=0o644)
    (data_dir / LOCK_FILE).chmod(0o644)
    open_json(data_dir)
    assert _mode(data_dir / LOCK_FILE) == 0o600


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to act as another user) and /usr/bin/python3",
)
def test_another_user_cannot_take_the_lock(open_parent: Path, clock: FakeClock) -> None:
    """Even in a data dir left traversable by an older version (0755), the
    lock file is 0600: another user cannot open it, so cannot flock it."""
    data_dir = open_parent / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    (data_dir / LOCK_FILE).touch()
    (data_dir / LOCK_FILE).chmod(0o644)
    store = open_json(data_dir)
    set_cone_state(store=store, band="C", reason="r", metrics=None, actor="a", clock=clock)
    grab = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "print('LOCKED')\n"
    )

    def run_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", grab, str(path)],
            capture_output=True,
            text=True,
            user=NOBODY,
            timeout=60,
            check=False,
        )

    refused = run_as_nobody(data_dir / LOCK_FILE)
    assert "LOCKED" not in refused.stdout
    assert "PermissionError" in refused.stderr
    # The control: the same program takes a lock it may open.
    control = open_parent / "open.lock"
    control.touch()
    control.chmod(0o644)
    assert run_as_nobody(control).stdout.strip() == "LOCKED"


# -- links planted in a data dir are never written through --


# A file outside the data dir that a planted link points at; its text parses
# as what the data dir's file would hold, so the store reads on and writes.
PRECIOUS = '{"tokens": [], "precious": true}\n'


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.conf"
    path.write_text(PRECIOUS)
    path.chmod(0o644)
    return path


def test_a_planted_document_link_is_replaced_not_followed(
    tmp_path: Path, clock: FakeClock, victim: Path
) -> None:
    data_dir = tmp_path / "data"
    open_json(data_dir)
    (data_dir / "tokens.json").symlink_to(victim)
    # The temp file's name too (this process and thread's own).
    tmp_name = f".tokens.json.{os.getpid()}.{threading.get_ident()}.tmp"
    (data_dir / tmp_name).symlink_to(victim)
    store = open_json(data_dir)
    create_token(store=store, name="ops", scopes=["owner"], actor="a", clock=clock)
    assert victim.read_text() == PRECIOUS
    assert not (data_dir / "tokens.json").is_symlink()
    assert not (data_dir / tmp_name).exists()


@pytest.mark.parametrize("name", ["audit.log", LOCK_FILE])
def test_a_planted_link_for_an_append_or_the_lock_is_refused(
    tmp_path: Path, clock: FakeClock, victim: Path, name: str
) -> None:
    data_dir = tmp_path / "data"
    open_json(data_dir)
    (data_dir / name).symlink_to(victim)
    store = open_json(data_dir)
    with pytest.raises(StorageUnavailableError, match="symbolic link"):
        create_token(store=store, name="ops", scopes=["owner"], actor="a", clock=clock)
    assert victim.read_text() == PRECIOUS
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # the lock's chmod did not reach it


def test_a_planted_owner_credential_link_is_refused(tmp_path: Path, victim: Path) -> None:
    data_dir = tmp_path / "data"
    open_json(data_dir)
    (data_dir / "owner.token").symlink_to(victim)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    result = subprocess.run(
        [VALHALLA, "init", str(data_dir)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert "symbolic link" in result.stderr
    assert victim.read_text() == PRECIOUS


def test_a_log_another_account_owns_is_not_appended_to(tmp_path: Path, clock: FakeClock) -> None:
    need(os.geteuid() == 0, "giving a file to another account needs root")
    data_dir = tmp_path / "data"
    store = open_json(data_dir)
    set_cone_state(store=store, band="C", reason="r", metrics=None, actor="a", clock=clock)
    log = data_dir / "audit.log"
    before = log.read_bytes()
    os.chown(log, NOBODY, NOBODY)
    with pytest.raises(StorageUnavailableError, match=f"chown 0 {log}"):
        set_cone_state(store=store, band="D", reason="r", metrics=None, actor="a", clock=clock)
    assert log.read_bytes() == before


def test_a_data_dir_another_account_owns_is_refused(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "giving a dir to another account needs root")
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, NOBODY, NOBODY)
    with pytest.raises(StorageUnavailableError, match=f"chown -R root {data_dir}"):
        open_json(data_dir)
    assert list(data_dir.iterdir()) == []


def test_a_data_dir_under_a_folder_another_account_owns_is_refused(tmp_path: Path) -> None:
    # That account could rename our data dir away and put its own in place
    # (with a token of its choosing), or a link to any folder.
    need(os.geteuid() == 0, "giving a folder to another account needs root")
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, NOBODY, NOBODY)
    data_dir = parent / "data"
    data_dir.mkdir(mode=0o700)
    with pytest.raises(StorageUnavailableError, match=f"{parent}, above the data dir, belongs"):
        open_json(data_dir)
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize(("mode", "refused"), [(0o777, True), (0o1777, False), (0o755, False)])
def test_a_folder_above_the_data_dir_that_others_can_write_is_refused_unless_sticky(
    tmp_path: Path, mode: int, refused: bool
) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(mode)
    data_dir = parent / "data"
    if refused:
        with pytest.raises(StorageUnavailableError, match=f"chmod og-w {parent}"):
            open_json(data_dir)
    else:
        open_json(data_dir)  # opens: a sticky or closed folder is no risk


def test_a_link_to_a_data_dir_is_checked_where_it_leads(tmp_path: Path) -> None:
    open_place = tmp_path / "open"
    open_place.mkdir()
    open_place.chmod(0o777)
    (open_place / "data").mkdir(mode=0o700)
    link = tmp_path / "data"
    link.symlink_to(open_place / "data")
    with pytest.raises(StorageUnavailableError, match=f"chmod og-w {open_place}"):
        open_json(link)


def test_a_sqlite_file_another_account_made_is_refused(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "giving a file to another account needs root")
    from valhalla_gov.compose import open_sql

    database = tmp_path / "theirs.db"
    database.touch(mode=0o644)
    os.chown(database, NOBODY, NOBODY)
    with pytest.raises(StorageUnavailableError, match="belongs to another account"):
        open_sql(f"sqlite:///{database}")
    assert database.stat().st_size == 0


def test_a_sqlite_file_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    from valhalla_gov.compose import open_sql

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StorageUnavailableError, match=f"chmod og-w {shared}"):
        open_sql(f"sqlite:///{shared / 'valhalla.db'}")
