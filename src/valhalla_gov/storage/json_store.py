"""Durable JSON documents and JSON-Lines logs on the local file system.

The rules (see ARCHITECTURE.md): a document write is temp file + fsync +
``os.replace`` + fsync of the directory; an append is a single ``write`` of a
whole line followed by fsync; a file that does not parse raises
:class:`StorageCorruptError` and is never touched.

No write follows a symbolic link or lands in a file another account owns:
files are opened ``O_NOFOLLOW`` (and new ones ``O_EXCL``), so a link planted
in a data dir cannot redirect a write elsewhere, and a data dir must belong
to the account that runs us (see :func:`ensure_private_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .encoding import document_bytes, loads
from .errors import StorageCorruptError, StorageUnavailableError

_CHUNK = 64 * 1024
# Backward scans start small: most want one record (a chain's last line).
_FIRST_CHUNK = 4 * 1024
# Walks of a whole log read this much at a time.
_BULK_BLOCK = 4 * 1024 * 1024
# Every open that may write: a symbolic link in the data dir is refused
# (ELOOP), never followed.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class FileOps:
    """Every system call by which this module changes files, in one place.

    The module calls them through :data:`fs` and never ``os`` directly, so a
    test can swap in a subclass that records the calls (the power-loss test
    replays them to every state a power cut may leave) or makes one fail.
    Reads are not here: they change nothing.
    """

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)


fs = FileOps()


def _unavailable(path: Path, exc: OSError) -> StorageUnavailableError:
    if exc.errno == errno.ENOSPC:
        return StorageUnavailableError(path, "no space left on device; nothing was written")
    if exc.errno == errno.ELOOP:
        return StorageUnavailableError(
            path,
            "is a symbolic link, which is never written through (someone may have planted "
            "it); move it aside",
        )
    return StorageUnavailableError(path, f"{exc.strerror or exc} (errno {exc.errno})")


def _check_ours(path: Path, fd: int) -> os.stat_result:
    """A file about to be written must be a regular file of this account:
    one another account owns (hard-linked in, or left by it) is refused."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise StorageUnavailableError(path, "is not a regular file; move it aside")
    if st.st_uid != os.geteuid():
        raise StorageUnavailableError(
            path,
            f"belongs to uid {st.st_uid}, not to uid {os.geteuid()} that runs this; "
            f"if it is yours, fix it with: chown {os.geteuid()} {path}",
        )
    return st


def parse_json_bytes(path: Path, raw: bytes) -> Any:
    try:
        return loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageCorruptError(
            path, f"does not parse as JSON ({exc}); left untouched, fix or move it aside"
        ) from exc


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    # os-level calls: a buffered file object costs more than reading a small
    # document (request-path probes read every document each time).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    try:
        first = os.read(fd, _CHUNK)
        if len(first) < _CHUNK:  # a short read of a regular file is its end
            return first
        parts = [first]
        while chunk := os.read(fd, _CHUNK):
            parts.append(chunk)
        return b"".join(parts)
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """Parse a JSON document; None when the file does not exist."""
    raw = read_bytes(path)
    if raw is None:
        return None
    return parse_json_bytes(path, raw)


def fsync_dir(directory: Path) -> None:
    fd = fs.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically and durably with ``data`` as JSON.

    On any failure (ENOSPC included) the old file is left as it was and the
    temporary file is removed.
    """
    write_bytes_atomic(path, document_bytes(data))


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Temp file in the same dir, fsync, ``os.replace``, fsync of the dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _write_temp(tmp, payload)
        fs.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.unlink(tmp)
        raise _unavailable(path, exc) from exc


def _write_temp(tmp: Path, payload: bytes) -> None:
    """``payload`` in a new private temp file, fsynced (not yet in place)."""
    fd = _open_new(tmp)
    try:
        _write_all(fd, payload)
        fs.fsync(fd)
    finally:
        fs.close(fd)


def _open_new(tmp: Path) -> int:
    """A new temp file, ``O_EXCL``: whatever is at its name (a file left by a
    crash, a planted link) is removed, never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        return fs.open(tmp, flags, 0o600)
    except FileExistsError:
        fs.unlink(tmp)  # removes a link itself, not what it points at
        return fs.open(tmp, flags, 0o600)


def create_exclusive(path: Path, payload: bytes) -> bool:
    """Create ``path`` holding ``payload`` if nothing is there yet, durably
    and all at once; False (and nothing changed) when something already is.

    The bytes are written to a temp file, which is then hard-linked to ``path``:
    ``link`` fails when ``path`` exists (a file or a link alike), so of two
    processes creating the same file exactly one wins, and nobody ever sees it
    half written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        _write_temp(tmp, payload)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.unlink(tmp)
        fsync_dir(path.parent)
        return True
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.unlink(tmp)
        raise _unavailable(path, exc) from exc


def read_private(path: Path) -> tuple[bytes, os.stat_result] | None:
    """A small secret file's bytes and its status, read without following a
    link (None when it does not exist); the caller decides whose it may be."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StorageUnavailableError(path, "is not a regular file; move it aside")
        return os.read(fd, _CHUNK), st
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    """Delete ``path`` durably (missing is fine)."""
    try:
        with contextlib.suppress(FileNotFoundError):
            fs.unlink(path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise _unavailable(path, exc) from exc


def append_line(path: Path, line: bytes) -> int:
    """Append one whole line durably; return the byte offset it starts at.

    Callers hold the data-dir lock, so the end offset is stable. A short or
    failed write is cut back off, so a line is either all there or not at all.
    """
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        raise ValueError("append_line takes exactly one newline-terminated line")
    try:
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    try:
        start = _check_ours(path, fd).st_size
        try:
            written = fs.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
            fs.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                fs.ftruncate(fd, start)
                fs.fsync(fd)
            raise _unavailable(path, exc) from exc
        if start == 0:
            fsync_dir(path.parent)
        return start
    finally:
        fs.close(fd)


def append_lines(path: Path, lines: Iterable[bytes], *, chunk: int = 1 << 20) -> int:
    """Append many whole lines with one fsync at the end (bulk imports).

    On failure the file is cut back to its old length. Returns the line count.
    """
    try:
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    count = 0
    try:
        start = _check_ours(path, fd).st_size
        buffer = bytearray()
        try:
            for line in lines:
                buffer += line
                count += 1
                if len(buffer) >= chunk:
                    _write_all(fd, bytes(buffer))
                    buffer.clear()
            _write_all(fd, bytes(buffer))
            fs.fsync(fd)
        except BaseException as exc:
            # Also when the records' source fails half-way: all or nothing.
            with contextlib.suppress(OSError):
                fs.ftruncate(fd, start)
                fs.fsync(fd)
            if isinstance(exc, OSError):
                raise _unavailable(path, exc) from exc
            raise
        if start == 0:
            fsync_dir(path.parent)
        return count
    finally:
        fs.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = fs.write(fd, view)
        view = view[written:]


def _open_log(path: Path) -> BinaryIO | None:
    """The file opened for reading, or None when it does not exist (an empty
    log); the caller's generator owns and closes the handle."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable(path, exc) from exc


def iter_lines_backward(
    path: Path, end: int | None = None, *, on_unterminated: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` from the end of the file towards its start.

    ``end`` bounds the scan to bytes before that offset (a cursor). Reading is
    in fixed chunks from the end, so the cost of a page does not depend on how
    long the file is. A trailing line without its newline (a torn write, or an
    append still being copied in by another process) is yielded too, unless
    ``on_unterminated`` is given: then it is left out and reported by offset.
    The decision is made on the bytes read, never by looking at the file again.
    """
    fh = _open_log(path)
    if fh is None:
        return
    with fh:
        size = os.fstat(fh.fileno()).st_size
        pos = size if end is None else min(end, size)
        drop_last = on_unterminated is not None
        tail = b""
        chunk = _FIRST_CHUNK
        while pos > 0:
            step = min(chunk, pos)
            chunk = min(chunk * 4, _CHUNK)
            pos -= step
            fh.seek(pos)
            block = fh.read(step) + tail
            parts = block.split(b"\n")
            # parts[0] may be an incomplete line continuing into earlier bytes.
            tail = parts[0]
            offset = pos + len(block)
            lines = parts[1:]
            if drop_last and lines:
                drop_last = False
                last = lines.pop()  # the bytes after the last newline read
                offset -= len(last) + 1
                if last.strip() and on_unterminated is not None:
                    on_unterminated(offset + 1)
            for part in reversed(lines):
                offset -= len(part) + 1
                if part.strip():
                    yield offset + 1, part
        if tail.strip():
            if drop_last and on_unterminated is not None:
                on_unterminated(0)  # not one newline read: a single unfinished line
                return
            yield 0, tail


class NotALineStart(Exception):
    """:func:`iter_lines_forward` with ``line_start`` from inside a line."""


def iter_lines_forward(
    path: Path,
    start: int = 0,
    *,
    on_unterminated: Callable[[int], None] | None = None,
    line_start: bool = False,
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` from ``start`` to the end of the file; with
    ``on_unterminated``, a last line read without its newline is left out
    and reported instead (decided on the bytes read). With ``line_start``,
    ``start`` must be 0 or just past a newline (checked with the same open,
    as :func:`is_line_start` would): NotALineStart otherwise."""
    check = line_start and start > 0
    fh = _open_log(path)
    if fh is None:
        if check:
            raise NotALineStart
        return
    with fh:
        try:
            if check:
                fh.seek(start - 1)
                if fh.read(1) != b"\n":
                    raise NotALineStart
            fh.seek(start)
            offset = start
            # Split on b"\n" only (binary lines), never on b"\r".
            for raw in fh:
                line = raw.rstrip(b"\n")
                if on_unterminated is not None and not raw.endswith(b"\n"):
                    if line.strip():
                        on_unterminated(offset)
                    return
                if line.strip():
                    yield offset, line
                offset += len(raw)
        except OSError as exc:
            raise _unavailable(path, exc) from exc


def iter_line_blocks(
    path: Path,
    start: int = 0,
    *,
    on_unterminated: Callable[[int], None],
    block: int | None = None,
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(offset, lines)``: the file's whole lines from ``start`` on, in
    blocks of about ``block`` bytes, each list starting at ``offset``. The
    lines lack their newline and may be blank. A last line read without its
    newline is left out and reported by offset, as in
    :func:`iter_lines_forward`. One ``split`` per block instead of a Python
    step per line: for walks of a whole log."""
    fh = _open_log(path)
    if fh is None:
        return
    size = _BULK_BLOCK if block is None else block
    with fh:
        fh.seek(start)
        offset = start
        tail = b""
        while True:
            try:
                data = fh.read(size)
            except OSError as exc:
                raise _unavailable(path, exc) from exc
            if not data:
                break
            if tail:
                data = tail + data
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
                continue
            tail = data[cut + 1 :]
            yield offset, data[:cut].split(b"\n")
            offset += cut + 1
        if tail.strip():
            on_unterminated(offset)


def last_line(path: Path) -> tuple[int, bytes] | None:
    """The last non-empty line and its offset, read from the end only."""
    for item in iter_lines_backward(path):
        return item
    return None


def is_line_start(path: Path, offset: int) -> bool:
    """True when ``offset`` is 0 or just past a newline in the file: a record boundary."""
    if offset == 0:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    try:
        return os.pread(fd, 1, offset - 1) == b"\n"
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, durably.

    On failure the partial file is removed and nothing else is touched.
    """
    try:
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except OSError as exc:
        raise _unavailable(path, exc) from exc
    try:
        try:
            _write_all(fd, data)
            fs.fsync(fd)
        finally:
            fs.close(fd)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            fs.unlink(path)
        raise _unavailable(path, exc) from exc


def truncate_file(path: Path, size: int) -> None:
    """Cut ``path`` back to ``size`` bytes, durably."""
    try:
        fd = fs.open(path, os.O_WRONLY | _NOFOLLOW)
        try:
            _check_ours(path, fd)
            fs.ftruncate(fd, size)
            fs.fsync(fd)
        finally:
            fs.close(fd)
    except OSError as exc:
        raise _unavailable(path, exc) from exc


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def ends_with_newline(path: Path) -> bool:
    """True for an empty/missing file or one whose last byte is a newline."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return True
            fh.seek(size - 1)
            return fh.read(1) == b"\n"
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise _unavailable(path, exc) from exc


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 (whatever the umask); refuse one that another
    account owns (it could have planted files or links in it before we came)
    or that other users can write (they could replace files or hold the lock).
    Each refusal names the one command that fixes it."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = directory.stat()
    except OSError as exc:
        raise StorageUnavailableError(directory, f"cannot create data dir: {exc}") from exc
    me = os.geteuid()
    if st.st_uid != me:
        raise StorageUnavailableError(
            directory,
            f"the data dir belongs to {_user(st.st_uid)}, not to {_user(me)} who runs this: "
            f"its files could have been planted by that account. If it is yours, fix it "
            f"with: chown -R {_user(me)} {directory}",
        )
    mode = st.st_mode & 0o777
    if mode & 0o022:
        raise StorageUnavailableError(
            directory,
            f"the data dir is writable by other users (mode {mode:o}), who could change "
            f"the data or hold its lock; fix it with: chmod og-w {directory}",
        )
    check_ancestors(directory, me)


def check_ancestors(directory: Path, me: int) -> None:
    """Every folder above the data dir or file (as written and as resolved) is ours
    or root's, and others cannot write it unless it is sticky like /tmp:
    otherwise another account could rename our data dir away and put its own
    (with credentials of its choosing) or a link to any folder in its place."""
    seen: set[Path] = set()
    for path in (directory.absolute(), directory.resolve()):
        for parent in path.parents:
            if parent in seen:
                continue
            seen.add(parent)
            try:
                st = parent.stat()
            except OSError as exc:
                raise StorageUnavailableError(directory, f"cannot check {parent}: {exc}") from exc
            if st.st_uid not in (me, 0):
                raise StorageUnavailableError(
                    directory,
                    f"{parent}, above the data dir, belongs to {_user(st.st_uid)}, who could "
                    f"swap the data dir for one of their own; keep the data dir in a folder "
                    f"owned by {_user(me)} or root",
                )
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise StorageUnavailableError(
                    directory,
                    f"{parent}, above the data dir, is writable by other users (mode "
                    f"{st.st_mode & 0o777:o}), who could swap the data dir for one of their "
                    f"own; fix it with: chmod og-w {parent} (or keep the data dir elsewhere)",
                )


def _user(uid: int) -> str:
    """A user's name (its number when it has none)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class DataDirLock:
    """Exclusive lock over a data dir: a thread lock plus ``flock`` on a file.

    Re-entrant within a thread, so a service may call another service that
    also takes the lock. The flock makes ``--workers N`` and a CLI beside a
    running server serialise their read-modify-write cycles.
    """

    def __init__(self, lock_path: Path) -> None:
        self._lock_path = lock_path
        # A lock file left readable by an older version could be opened, and
        # so flock-ed, by other users: only the data's owner may hold it.
        # fchmod on what was opened without following a link: a planted link
        # must not turn this into a chmod of the file it points at.
        with contextlib.suppress(OSError):
            fd = os.open(lock_path, os.O_RDONLY | _NOFOLLOW)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        self._thread_lock = threading.RLock()
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            depth: int = getattr(self._local, "depth", 0)
            if depth:
                self._local.depth = depth + 1
                try:
                    yield
                finally:
                    self._local.depth = depth
                return
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
            except OSError as exc:
                raise _unavailable(self._lock_path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._local.depth = 1
                try:
                    yield
                finally:
                    self._local.depth = 0
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
