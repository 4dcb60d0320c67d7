"""json_store: atomic documents, whole-line appends and chunked line scans."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from valhalla_gov.storage import json_store
from valhalla_gov.storage.errors import StorageCorruptError, StorageUnavailableError
from valhalla_gov.storage.json_store import (
    append_line,
    iter_lines_backward,
    iter_lines_forward,
    read_json,
    write_json,
)

CHUNK = 64 * 1024


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- documents -------------------------------------------------------------


def test_write_json_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json(path, {"band": "B", "notes": "Grüße ✓", "n": [1, 2.5, None, True]})
    assert read_json(path) == {"band": "B", "notes": "Grüße ✓", "n": [1, 2.5, None, True]}
    write_json(path, {"band": "C"})
    assert read_json(path) == {"band": "C"}
    assert names(tmp_path) == ["doc.json"]


def test_write_json_replaces_the_file_instead_of_rewriting_it(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json(path, {"v": 1})
    before = path.stat().st_ino
    with open(path, "rb") as old_handle:
        write_json(path, {"v": 2})
        # A reader that opened the old file still sees a whole old document:
        # the new one arrived by rename, not by truncating and rewriting.
        assert json.loads(old_handle.read()) == {"v": 1}
    assert path.stat().st_ino != before
    assert read_json(path) == {"v": 2}


def test_concurrent_readers_never_see_a_partial_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    big = "x" * 200_000
    write_json(path, {"i": -1, "pad": big})
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                doc = read_json(path)
                assert isinstance(doc, dict)
                seen.append(int(doc["i"]))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            write_json(path, {"i": i, "pad": big})
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert seen, "the reader never ran"
    assert seen == sorted(seen)
    assert names(tmp_path) == ["doc.json"]


def test_read_json_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") is None
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    "raw",
    [b'{"band": "B",', b"", b"\xff\xfe{}", b"not json at all\n", b'{"a": 1}\n{"b": 2}\n'],
    ids=["truncated", "empty", "bad-utf8", "text", "two-values"],
)
def test_read_json_of_a_bad_file_names_it_and_leaves_it_alone(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "cone_state.json"
    path.write_bytes(raw)
    with pytest.raises(StorageCorruptError) as info:
        read_json(path)
    assert info.value.path == str(path)
    assert "cone_state.json" in str(info.value)
    assert path.read_bytes() == raw
    assert names(tmp_path) == ["cone_state.json"]


def test_read_json_of_an_unreadable_path_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.mkdir()
    with pytest.raises(StorageUnavailableError) as info:
        read_json(path)
    assert info.value.path == str(path)


def test_failed_write_json_keeps_nothing_behind(tmp_path: Path) -> None:
    # The target is a non-empty directory, so the final rename fails after
    # the temp file was fully written.
    path = tmp_path / "doc.json"
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(StorageUnavailableError) as info:
        write_json(path, {"v": 1})
    assert info.value.path == str(path)
    assert names(tmp_path) == ["doc.json"]
    assert names(path) == ["keep"]


def test_write_json_into_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "doc.json"
    with pytest.raises(StorageUnavailableError) as info:
        write_json(path, {"v": 1})
    assert "doc.json" in str(info.value)
    assert names(tmp_path) == []


# -- appends ---------------------------------------------------------------


def test_append_line_returns_each_line_start(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    lines = [b'{"n":1}\n', b'{"n":22}\n', b'{"n":333}\n']
    offsets = [append_line(path, line) for line in lines]
    assert offsets == [0, 8, 17]
    assert path.read_bytes() == b"".join(lines)


@pytest.mark.parametrize("line", [b'{"n":1}', b'{"n":1}\n{"n":2}\n', b"\n{}"])
def test_append_line_refuses_anything_but_one_whole_line(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "x.log"
    append_line(path, b'{"n":0}\n')
    with pytest.raises(ValueError, match="one newline-terminated line"):
        append_line(path, line)
    assert path.read_bytes() == b'{"n":0}\n'


# -- scanning lines across chunk boundaries ----------------------------------


def reference_lines(data: bytes) -> list[tuple[int, bytes]]:
    """What both iterators must yield, oldest first, computed the slow way."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    for piece in data.split(b"\n"):
        if piece.strip():
            out.append((offset, piece))
        offset += len(piece) + 1
    return out


def line_of(n: int, length: int) -> bytes:
    head = b"%08d:" % n
    return head + bytes([97 + n % 26]) * max(0, length - len(head))


def boundary_files() -> dict[str, bytes]:
    a = line_of(1, CHUNK - 1) + b"\n"  # 65536 bytes: a newline ends chunk 1
    b = line_of(2, CHUNK - 1) + b"\n"
    c = line_of(3, CHUNK) + b"\n"  # 65537 bytes: a chunk starts with a newline
    d = line_of(4, CHUNK - 2) + b"\n"
    huge = line_of(5, 3 * CHUNK + 17) + b"\n"  # one line spans four chunks
    return {
        "newline-ends-a-chunk": a + b,
        "chunk-starts-with-newline": c + d,
        "line-spans-chunks": b"short\n" + huge + b"tail\n",
        "only-a-huge-line": huge,
        "blank-lines": b"\n\n" + a + b"   \n\n" + b + b"\n",
        "torn-tail": a + line_of(6, 100),
        "one-chunk-exactly": line_of(7, CHUNK - 1) + b"\n",
    }


@pytest.mark.parametrize("name", sorted(boundary_files()))
def test_iterators_match_the_reference_at_chunk_boundaries(tmp_path: Path, name: str) -> None:
    data = boundary_files()[name]
    path = tmp_path / "x.log"
    path.write_bytes(data)
    expected = reference_lines(data)
    assert expected, "the case has lines"
    assert list(iter_lines_forward(path)) == expected
    assert list(iter_lines_backward(path)) == expected[::-1]


@pytest.mark.parametrize("seed", range(12))
def test_iterators_match_the_reference_on_random_logs(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    parts: list[bytes] = []
    for n in range(rng.randint(5, 40)):
        kind = rng.random()
        if kind < 0.1:
            parts.append(b"\n")
        elif kind < 0.15:
            parts.append(b" \t \n")
        else:
            length = rng.choice([1, 2, 50, 4000, CHUNK - 1, CHUNK, CHUNK + 1, 150_000])
            parts.append(line_of(n, length + rng.randint(0, 3)) + b"\n")
    if seed % 3 == 0:
        parts.append(line_of(999, rng.randint(1, 90_000)))  # torn tail
    data = b"".join(parts)
    path = tmp_path / "x.log"
    path.write_bytes(data)
    expected = reference_lines(data)
    assert list(iter_lines_forward(path)) == expected
    assert list(iter_lines_backward(path)) == expected[::-1]
    # Resuming at every line start gives exactly the rest, in both directions.
    for index, (offset, _) in enumerate(expected):
        assert list(iter_lines_backward(path, offset)) == expected[:index][::-1]
        assert list(iter_lines_forward(path, offset)) == expected[index:]


def test_appended_offsets_are_the_offsets_the_scans_report(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    lengths = [10, CHUNK - 7, 3, CHUNK * 2 + 5, 1, CHUNK - 1, 700]
    written = []
    for n, length in enumerate(lengths):
        line = line_of(n, length)
        written.append((append_line(path, line + b"\n"), line))
    assert path.stat().st_size > 4 * CHUNK
    assert list(iter_lines_forward(path)) == written
    assert list(iter_lines_backward(path)) == written[::-1]
    assert json_store.last_line(path) == written[-1]


def test_scans_of_a_missing_file_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "absent.log"
    assert list(iter_lines_forward(path)) == []
    assert list(iter_lines_backward(path)) == []
    assert json_store.last_line(path) is None
    assert json_store.ends_with_newline(path) is True
    assert json_store.file_size(path) == 0
    assert not path.exists()


def test_backward_end_beyond_the_file_reads_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nbb\n")
    assert list(iter_lines_backward(path, 10_000)) == [(2, b"bb"), (0, b"a")]


def test_is_line_start(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nbb\n")
    assert [o for o in range(8) if json_store.is_line_start(path, o)] == [0, 2, 5]
    assert json_store.is_line_start(tmp_path / "absent.log", 0)
    assert not json_store.is_line_start(tmp_path / "absent.log", 3)


def test_write_new_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "side"
    json_store.write_new_file(path, b"first")
    with pytest.raises(StorageUnavailableError):
        json_store.write_new_file(path, b"second")
    assert path.read_bytes() == b"first"


@pytest.mark.parametrize("seed", range(8))
def test_forward_scans_from_any_start_match_the_reference(tmp_path: Path, seed: int) -> None:
    # Lines, offsets, the torn-tail report and the boundary check, from every
    # kind of start, against the slow way; with bytes such as "\r" that a
    # naive line split would cut at.
    rng = random.Random(seed)
    parts = [
        rng.choice(
            [b"\n", b" \n", b'{"a":"x\ry"}\n', b"\x0b\x0c\x1c\x85\n", line_of(seed, 40) + b"\n"]
        )
        for _ in range(rng.randint(1, 30))
    ]
    if seed % 2:
        parts.append(rng.choice([b'{"torn', b"  ", b"\r"]))
    path = tmp_path / "x.log"
    data = b"".join(parts)
    path.write_bytes(data)
    size = len(data)
    starts = sorted({0, size, *(rng.randint(0, size) for _ in range(5))})
    starts += [o + 1 for o, _ in iter_lines_forward(path)][:3]  # just past a line's first byte
    starts.append(size + 3)  # past the end: no boundary

    for start in starts:
        rest = [(start + o, line) for o, line in reference_lines(data[start:])]
        after_last_newline = data[start:][data[start:].rfind(b"\n") + 1 :]
        torn_at = rest[-1][0] if after_last_newline.strip() else None
        assert list(iter_lines_forward(path, start)) == rest
        torn: list[int] = []
        lines = list(iter_lines_forward(path, start, on_unterminated=torn.append))
        assert lines == (rest[:-1] if torn_at is not None else rest)
        assert torn == ([] if torn_at is None else [torn_at])
        boundary = start == 0 or data[start - 1 : start] == b"\n"
        assert boundary == json_store.is_line_start(path, start)
        if boundary:
            assert list(iter_lines_forward(path, start, line_start=True)) == rest
        else:
            with pytest.raises(json_store.NotALineStart):
                list(iter_lines_forward(path, start, line_start=True))
