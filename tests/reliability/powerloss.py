"""A power cut, simulated: record the file-system calls, replay every crash state.

kill -9 leaves the page cache to the kernel, so it proves atomicity and write
order but never durability. Here every call by which ``json_store`` changes
files (through its ``FileOps`` seam) is recorded while a scenario runs on a
real directory; then, for every point of the trace, the states a power cut
at that point may leave are rebuilt and checked (the method of ALICE and
CrashMonkey).

The model of what survives a power cut, deliberately pessimistic:

- File data (writes and truncations of one file) is durable once that file
  was fsynced. Of the changes since, any *prefix* in issue order may survive,
  and the last surviving write may be torn (half of it).
- Directory changes (create, rename, unlink) are durable once the directory
  was fsynced; of those since, any prefix may survive. An fsync of a file
  does not make its name durable.
- A name whose file data never became durable names an empty (or partial)
  file: what a rename of an un-fsynced temp file leaves.

Crash states are combined per crash point: every file and the directory at
their extremes (all or none of their pending changes), and each of them in
turn through every prefix while the others sit at either extreme. Identical
states are checked once.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from valhalla_gov.storage import json_store


@dataclass(frozen=True)
class Event:
    """One recorded call: ``link`` (a new name for a new file), ``rename``,
    ``unlink``, ``write``, ``trunc``, ``fsync`` (a file), ``fsync_dir``."""

    kind: str
    name: str = ""
    dst: str = ""
    ino: int = 0
    offset: int = 0
    data: bytes = b""


_DIR_KINDS = ("link", "rename", "unlink")
_DIR = -1  # the fd marker of an open directory


@dataclass
class Fault:
    """Fail the first fsync of file ``name`` with ``err`` (the write went into
    the page cache, the disk said no): what makes an operation take itself back."""

    name: str
    err: int = errno.EIO
    fired: bool = False


class Recorder(json_store.FileOps):
    """Passes every call through to the real file system and records it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.trace: list[Event] = []
        self.names: dict[str, int] = {}
        self.sizes: dict[int, int] = {}
        self.fds: dict[int, list[int]] = {}  # fd -> [ino, append, position]
        self._next_ino = 0
        self.fault: Fault | None = None
        self.initial: dict[int, bytes] = {}
        for path in sorted(directory.iterdir()):  # what is there is durable
            if path.is_file():
                ino = self._new_ino()
                self.names[path.name] = ino
                self.initial[ino] = path.read_bytes()
                self.sizes[ino] = len(self.initial[ino])
        self.initial_names = dict(self.names)

    def _new_ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    def _name(self, path: Path) -> str:
        assert Path(path).parent == self.directory, f"a write outside the data dir: {path}"
        return Path(path).name

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_DIRECTORY:
            fd = super().open(path, flags, mode)
            assert Path(path) == self.directory, f"fsync of another directory: {path}"
            self.fds[fd] = [_DIR, 0, 0]
            return fd
        name = self._name(path)
        fd = super().open(path, flags, mode)
        ino = self.names.get(name)
        if ino is None:
            ino = self._new_ino()
            self.names[name] = ino
            self.sizes[ino] = 0
            self.trace.append(Event("link", name=name, ino=ino))
        elif flags & os.O_TRUNC:
            self.sizes[ino] = 0
            self.trace.append(Event("trunc", ino=ino, offset=0))
        self.fds[fd] = [ino, int(bool(flags & os.O_APPEND)), 0]
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        ino, append, position = self.fds[fd]
        written = super().write(fd, data)
        offset = self.sizes[ino] if append else position
        self.fds[fd][2] = offset + written
        self.sizes[ino] = max(self.sizes[ino], offset + written)
        self.trace.append(Event("write", ino=ino, offset=offset, data=bytes(data[:written])))
        return written

    def ftruncate(self, fd: int, size: int) -> None:
        ino = self.fds[fd][0]
        super().ftruncate(fd, size)
        self.sizes[ino] = size
        self.trace.append(Event("trunc", ino=ino, offset=size))

    def fsync(self, fd: int) -> None:
        ino = self.fds[fd][0]
        if ino == _DIR:
            super().fsync(fd)
            self.trace.append(Event("fsync_dir"))
            return
        fault = self.fault
        if fault is not None and not fault.fired and self.names.get(fault.name) == ino:
            fault.fired = True
            raise OSError(fault.err, os.strerror(fault.err))
        super().fsync(fd)
        self.trace.append(Event("fsync", ino=ino))

    def close(self, fd: int) -> None:
        super().close(fd)
        del self.fds[fd]

    def replace(self, src: Path, dst: Path) -> None:
        super().replace(src, dst)
        source, target = self._name(src), self._name(dst)
        self.names[target] = self.names.pop(source)
        self.trace.append(Event("rename", name=source, dst=target))

    def unlink(self, path: Path) -> None:
        super().unlink(path)
        name = self._name(path)
        del self.names[name]
        self.trace.append(Event("unlink", name=name))


def _apply_data(content: bytes, event: Event, torn: bool = False) -> bytes:
    if event.kind == "trunc":
        return content[: event.offset] + b"\0" * max(0, event.offset - len(content))
    data = event.data[: len(event.data) // 2] if torn else event.data
    if len(content) < event.offset:  # a hole reads as zeros
        content += b"\0" * (event.offset - len(content))
    return content[: event.offset] + data + content[event.offset + len(data) :]


def _apply_dir(names: dict[str, int], event: Event) -> None:
    if event.kind == "link":
        names[event.name] = event.ino
    elif event.kind == "rename":
        if event.name in names:
            names[event.dst] = names.pop(event.name)
    else:
        names.pop(event.name, None)


@dataclass
class _Durable:
    """What a power cut cannot take any more, and what it still may."""

    names: dict[str, int]
    data: dict[int, bytes]
    pending_dir: list[Event] = field(default_factory=list)
    pending: dict[int, list[Event]] = field(default_factory=dict)


CrashState = dict[str, bytes]


def _options(ops: list[Event]) -> list[tuple[int, bool]]:
    """(how many pending changes survive, whether the last one is torn)."""
    options = [(count, False) for count in range(len(ops) + 1)]
    options += [
        (count, True)
        for count in range(1, len(ops) + 1)
        if ops[count - 1].kind == "write" and len(ops[count - 1].data) > 1
    ]
    return options


def crash_states(recorder: Recorder, point: int) -> Iterator[CrashState]:
    """Every state (file name -> bytes) a power cut after ``point`` recorded
    calls may leave, as combined in the module docstring (with repeats)."""
    state = _Durable(names=dict(recorder.initial_names), data=dict(recorder.initial))
    for event in recorder.trace[:point]:
        if event.kind in _DIR_KINDS:
            state.pending_dir.append(event)
        elif event.kind in ("write", "trunc"):
            state.pending.setdefault(event.ino, []).append(event)
        elif event.kind == "fsync":
            content = state.data.get(event.ino, b"")
            for change in state.pending.pop(event.ino, []):
                content = _apply_data(content, change)
            state.data[event.ino] = content
        else:  # fsync_dir
            for change in state.pending_dir:
                _apply_dir(state.names, change)
            state.pending_dir = []
    dims: list[tuple[int | None, list[tuple[int, bool]]]] = [
        (None, [(n, False) for n in range(len(state.pending_dir) + 1)])
    ]
    dims += [(ino, _options(ops)) for ino, ops in sorted(state.pending.items())]

    def build(choice: dict[int | None, tuple[int, bool]]) -> CrashState:
        names = dict(state.names)
        for change in state.pending_dir[: choice[None][0]]:
            _apply_dir(names, change)
        files: CrashState = {}
        for name, ino in names.items():
            content = state.data.get(ino, b"")
            count, torn = choice.get(ino, (0, False))
            ops = state.pending.get(ino, [])
            for n, change in enumerate(ops[:count]):
                content = _apply_data(content, change, torn=torn and n == count - 1)
            files[name] = content
        return files

    for extreme in (0, -1):
        base = {key: options[extreme] for key, options in dims}
        yield build(base)
        for key, options in dims:
            for option in options:
                yield build({**base, key: option})


def state_key(files: CrashState) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def materialise(files: CrashState, directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory
