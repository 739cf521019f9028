"""sidestream.sse: the encoder never breaks framing, the parser follows the WHATWG rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidestream.sse import Event, EventStreamParser, comment, encode

BOM = "\ufeff"


def parse(*chunks: bytes) -> list[Event]:
    parser = EventStreamParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def bytewise(stream: bytes) -> list[Event]:
    return parse(*(stream[i : i + 1] for i in range(len(stream))))


# --- encode -----------------------------------------------------------------------------------


def test_encode_single_line() -> None:
    assert encode(Event("hello")) == b"data: hello\n\n"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("a\nb", ["a", "b"]),
        ("a\rb", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("a\r\n\r\nb", ["a", "", "b"]),
        ("a\n\rb", ["a", "", "b"]),  # LF then CR is two line ends, not one
        ("a\r\r\nb", ["a", "", "b"]),
        ("end\n", ["end", ""]),
        ("\nstart", ["", "start"]),
        ("\n", ["", ""]),
    ],
)
def test_encode_splits_every_line_end_into_its_own_data_line(data: str, lines: list[str]) -> None:
    assert (
        encode(Event(data)) == b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"
    )


def test_encode_empty_data_is_one_bare_data_line() -> None:
    assert encode(Event("")) == b"data:\n\n"


def test_encode_writes_fields_before_data_and_utf8() -> None:
    event = Event("héllo 🌊", event="wave", id="42", retry=1500)
    assert encode(event) == "event: wave\nid: 42\nretry: 1500\ndata: héllo 🌊\n\n".encode()


def test_encode_empty_id_resets_the_last_event_id() -> None:
    assert encode(Event("x", id="")) == b"id:\ndata: x\n\n"
    assert parse(encode(Event("a", id="1")) + encode(Event("b", id="")))[1].id is None


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n", "a\0b"])
def test_encode_rejects_line_breaks_and_nul_in_id_and_event(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"Event\.{field} .* contains CR, LF or NUL"):
        encode(Event("x", **{field: bad}))


def test_encode_rejects_an_empty_event_type() -> None:
    with pytest.raises(ValueError, match="use event=None"):
        encode(Event("x", event=""))


@pytest.mark.parametrize("retry", [0, 1, 3000, 2**40])
def test_encode_accepts_non_negative_retry(retry: int) -> None:
    assert encode(Event("x", retry=retry)) == f"retry: {retry}\ndata: x\n\n".encode()


def test_encode_rejects_negative_retry() -> None:
    with pytest.raises(ValueError, match=">= 0 milliseconds, got -1"):
        encode(Event("x", retry=-1))


@pytest.mark.parametrize("retry", [True, False, 1.5, "100"])
def test_encode_rejects_a_retry_that_is_not_an_int(retry: object) -> None:
    with pytest.raises(TypeError, match=r"Event\.retry must be an int"):
        encode(Event("x", retry=retry))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"), [("data", b"x"), ("data", None), ("id", 7), ("event", 1)]
)
def test_encode_rejects_fields_of_the_wrong_type(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"data": "x", field: value}
    with pytest.raises(TypeError, match=rf"Event\.{field} must be a str"):
        encode(Event(**kwargs))  # type: ignore[arg-type]


def test_encode_rejects_a_lone_surrogate_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        encode(Event("bad \ud800 text"))


@pytest.mark.parametrize(
    "hostile",
    [
        "x\n\nid: forged\ndata: injected",
        "x\r\rdata: injected",
        "x\r\n\r\nevent: admin\ndata: injected",
        "data: looks like a field",
        ": looks like a comment",
        "retry: 1",
    ],
)
def test_encode_keeps_field_looking_text_inside_one_event(hostile: str) -> None:
    parser = EventStreamParser()
    events = parser.feed(encode(Event(hostile, id="real")))
    expected = hostile.replace("\r\n", "\n").replace("\r", "\n")
    assert events == [Event(expected, id="real")]
    assert parser.retry is None


def test_event_is_a_frozen_value() -> None:
    event = Event("x")
    assert event == Event("x", None, None, None)
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]


# --- comment ----------------------------------------------------------------------------------


def test_comment() -> None:
    assert comment("ping") == b": ping\n\n"
    assert comment() == b":\n\n"
    assert comment("a\r\nb\rc\nd") == b": a\n: b\n: c\n: d\n\n"


def test_comments_are_ignored_and_do_not_end_an_event() -> None:
    stream = comment("hello") + b"data: a\n" + comment("x\ndata: injected")[:-1] + b"data: b\n\n"
    assert parse(stream) == [Event("a\nb")]


def test_a_comment_with_line_breaks_stays_a_comment() -> None:
    assert parse(comment("x\n\ndata: injected\n\n")) == []


# --- parser: decoding -------------------------------------------------------------------------


def test_parser_strips_one_leading_bom_only() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\n") == [Event("a")]
    # A second BOM is part of the first field name, which is then unknown: the line is ignored.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [Event("b")]


def test_parser_strips_a_bom_split_across_chunks() -> None:
    assert parse(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [Event("a")]


def test_parser_keeps_a_bom_that_is_not_at_the_start() -> None:
    assert parse(b"data: \xef\xbb\xbfa\n\n") == [Event(BOM + "a")]
    assert parse(b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n") == [Event("a")]


def test_parser_decodes_a_character_split_across_chunks() -> None:
    wave = "🌊".encode()
    assert parse(b"data: ", wave[:1], wave[1:3], wave[3:], b"\n\n") == [Event("🌊")]


def test_parser_replaces_invalid_utf8_like_a_browser() -> None:
    # WHATWG UTF-8 decode: one U+FFFD per maximal invalid subpart.
    assert parse(b"data: a\xffb\xe2\x82c\xed\xa0\x80\n\n") == [
        Event("a\ufffdb\ufffdc" + "\ufffd" * 3)
    ]


# --- parser: lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_parser_accepts_every_line_end(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol
    assert parse(stream) == [Event("a\nb")]
    assert bytewise(stream) == [Event("a\nb")]


def test_parser_joins_cr_and_lf_split_across_chunks_into_one_line_end() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF: no blank line yet
    assert parser.feed(b"\r") == [Event("a")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [Event("b")]


def test_parser_reads_cr_cr_as_two_line_ends() -> None:
    assert parse(b"data: a\r", b"\rdata: b\r\r") == [Event("a"), Event("b")]


def test_parser_waits_for_the_end_of_a_line() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: hel") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"lo\n") == []
    assert parser.feed(b"\n") == [Event("hello")]


def test_parser_does_not_dispatch_an_incomplete_event() -> None:
    assert parse(b"data: a\n\ndata: never finished\n") == [Event("a")]


def test_parser_handles_a_long_line_in_small_chunks() -> None:
    line = b"x" * 200_000
    chunks = [b"data: "] + [line[i : i + 7] for i in range(0, len(line), 7)] + [b"\n\n"]
    assert parse(*chunks) == [Event("x" * 200_000)]


# --- parser: fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),  # only one space is removed
        (b"data:\tx", "\tx"),
        (b"data: a: b", "a: b"),  # split at the first colon only
        (b"data", ""),  # no colon: the whole line is the field name, the value is empty
        (b"data:", ""),
        (b"data: ", ""),
    ],
)
def test_parser_splits_field_and_value_at_the_first_colon(line: bytes, data: str) -> None:
    assert parse(line + b"\n\n") == [Event(data)]


def test_parser_joins_data_lines_with_lf_and_removes_one_trailing_lf() -> None:
    assert parse(b"data: a\ndata\ndata: b\n\n") == [Event("a\n\nb")]
    assert parse(b"data\ndata\n\n") == [Event("\n")]


def test_parser_dispatches_an_empty_data_line_but_not_a_block_without_data() -> None:
    assert parse(b"data:\n\n") == [Event("")]
    assert parse(b"event: x\nid: 1\n\n:\n\n\n\n") == []


def test_parser_ignores_comments_and_unknown_fields() -> None:
    stream = b": comment\ndata: a\n:another\nData: b\nfoo: bar\n data: c\ndata : d\nx\n\n"
    assert parse(stream) == [Event("a")]


def test_parser_event_type_defaults_to_none_and_resets_after_each_block() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: b\n\ndata: 4\n\n"
    assert [(e.event, e.data) for e in parse(stream)] == [
        ("a", "1"),
        (None, "2"),
        (None, "3"),
        (None, "4"),
    ]


def test_parser_last_event_id_persists_and_resets() -> None:
    parser = EventStreamParser()
    stream = b"data: a\n\nid: 1\ndata: b\n\ndata: c\n\nid: 2\n\ndata: d\n\nid\ndata: e\n\n"
    assert [(e.data, e.id) for e in parser.feed(stream)] == [
        ("a", None),
        ("b", "1"),
        ("c", "1"),  # ids persist
        ("d", "2"),  # an id in a block without data still takes effect
        ("e", None),  # an empty id resets it
    ]
    assert parser.last_event_id == ""


def test_parser_ignores_an_id_containing_nul() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n") == [
        Event("a", id="1"),
        Event("b", id="1"),
    ]
    assert parser.last_event_id == "1"


def test_parser_takes_the_last_field_of_a_block() -> None:
    assert parse(b"event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n") == [
        Event("x", event="b", id="2")
    ]


@pytest.mark.parametrize(
    ("value", "retry"),
    [
        (b"1500", 1500),
        (b"0", 0),
        (b"0010", 10),
        (b"18446744073709551615", 2**64 - 1),
        (b"0" * 50 + b"7", 7),
        (b"18446744073709551616", None),  # overflows 64 bits: ignored, as Chromium does
        (b"9" * 5000, None),  # more digits than int() would convert
        (b"", None),
        (b" 100", None),  # only one space is removed; the second is not a digit
        (b"100 ", None),
        (b"-1", None),
        (b"+1", None),
        (b"1.5", None),
        (b"1e3", None),
        ("١٢".encode(), None),  # Arabic-Indic digits are digits, but not ASCII digits
        ("²".encode(), None),
    ],
)
def test_parser_accepts_retry_only_as_ascii_digits(value: bytes, retry: int | None) -> None:
    parser = EventStreamParser()
    events = parser.feed(b"retry: " + value + b"\ndata: x\n\n")
    assert parser.retry == retry
    assert events == [Event("x", retry=retry)]


def test_parser_retry_stays_in_force_and_events_carry_their_own() -> None:
    parser = EventStreamParser()
    events = parser.feed(b"retry: 100\n\ndata: a\n\nretry: 200\nretry: x\ndata: b\n\ndata: c\n\n")
    assert events == [Event("a"), Event("b", retry=200), Event("c")]
    assert parser.retry == 200


# --- properties -------------------------------------------------------------------------------

# Text with the characters that break naive framing, plus non-ASCII, emoji and BOM-looking ones.
PIECES = ["\r", "\n", "\r\n", "\0", BOM, ":", " ", "data: ", "id: ", "é", "🌊", "\u2028", "\x85"]
HOSTILE = st.lists(
    st.sampled_from(PIECES) | st.characters(exclude_categories=("Cs",)), max_size=40
).map("".join)
FIELD = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0"), max_size=12)
EVENTS = st.lists(
    st.builds(
        Event,
        data=HOSTILE,
        event=st.none() | FIELD.filter(bool),
        id=st.none() | FIELD,
        retry=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    ),
    max_size=8,
)


def expected_after_parsing(events: list[Event]) -> list[Event]:
    """What a browser reports for these events: line ends as LF, and the last id in force."""
    received, last_id = [], None
    for event in events:
        if event.id is not None:
            last_id = event.id or None
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        received.append(Event(data, event.event, last_id, event.retry))
    return received


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@given(events=EVENTS, bom=st.booleans(), heartbeat=st.none() | HOSTILE, data=st.data())
def test_parsing_the_encoding_round_trips_with_any_chunking(
    events: list[Event], bom: bool, heartbeat: str | None, data: st.DataObject
) -> None:
    beat = b"" if heartbeat is None else comment(heartbeat)
    stream = (BOM.encode() if bom else b"") + beat + beat.join(encode(e) for e in events)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream)))
    parser = EventStreamParser()
    received = [event for chunk in chunked(stream, cuts) for event in parser.feed(chunk)]
    assert received == expected_after_parsing(events)
    retries = [e.retry for e in events if e.retry is not None]
    assert parser.retry == (retries[-1] if retries else None)


@given(events=EVENTS)
def test_one_byte_chunks_parse_like_one_chunk(events: list[Event]) -> None:
    stream = b"".join(encode(e) for e in events)
    assert bytewise(stream) == parse(stream) == expected_after_parsing(events)


@given(stream=st.binary(max_size=200), data=st.data())
def test_any_bytes_parse_the_same_however_chunked(stream: bytes, data: st.DataObject) -> None:
    # Garbage in, no crash, and chunking never changes the result (WHATWG parsing is a stream).
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream)))
    assert parse(*chunked(stream, cuts)) == parse(stream)


@given(text=HOSTILE)
def test_a_comment_never_produces_an_event(text: str) -> None:
    assert bytewise(comment(text) + b"data: after\n\n") == [Event("after")]
