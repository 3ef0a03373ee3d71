"""Fuzzing every decoder and session with hypothesis (issue 12, item 17).

Properties, for any input and any cut of it into reads:

* nothing raises but :class:`ProtocolError` from a decoder, and nothing at all from a
  session (a session turns a violation into a close with a GOAWAY code);
* memory held stays proportional to the bytes fed, never to a length a peer claims;
* what the encoders make decodes back to the same messages;
* where the input is cut does not change the result (messages, controls, error code).

``make test`` runs each property a few dozen times (the file takes a few seconds);
``make fuzz`` sets ``FUZZ_EXAMPLES`` (e.g. 20000) for a long run, then runs the atheris
harness (tests/fuzz_atheris.py) when atheris installs.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objtransport.config import Options
from objtransport.exceptions import ProtocolError
from objtransport.sansio.datagram import DatagramSession
from objtransport.sansio.envelope import decode_envelope, encode_frames, encode_payload
from objtransport.sansio.events import Closed, Message, Received, as_message
from objtransport.sansio.fragmentation import FIRST_CHUNK, FragmentJob, Reassembler
from objtransport.sansio.framing import (
    FLAG_FRAG,
    FRAG_EXT,
    FRAME_HEADER,
    MAGIC,
    GoAwayCode,
    Hello,
    encode_data,
    encode_hello,
    encode_raw,
)
from objtransport.sansio.message import MessageSession
from objtransport.sansio.native_decoder import NativeDecoder
from objtransport.sansio.raw import RawSession
from objtransport.sansio.raw_decoder import RawDecoder
from objtransport.sansio.reassembly import ReassemblyBudget
from objtransport.sansio.session import NativeSession

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
MAX_PARTIAL = 4
CLAIMS = [16, 24, 28, 64 * 1024, 64 * 1024 + 28, 1 << 20, (1 << 20) + 1, 64 << 20, 0xFFFFFFFF]


def fuzz(default: int) -> Any:
    """``default`` examples, or ``FUZZ_EXAMPLES`` when set (``make fuzz``)."""
    return settings(max_examples=EXAMPLES or default, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _step(steps: list[int], i: int, size: int) -> int:
    """The i-th read size: from ``steps``, at least 1/500 of the input (bounded time)."""
    return max(steps[i % len(steps)], size // 500)


def _bound(fed: int) -> int:
    """Memory a decoder may hold after ``fed`` bytes: a small multiple of them, plus a first
    chunk per message in progress; never a claimed length."""
    return 4 * fed + (MAX_PARTIAL + 1) * 2 * FIRST_CHUNK


# -- input strategies ----------------------------------------------------------------------
fill = st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, 3000))


@st.composite
def native_frame(draw: Any) -> bytes:
    """One native frame, often well formed, often not; claimed lengths up to 4 GiB."""
    kind = draw(st.sampled_from(["data", "frag", "other", "junk", "message"]))
    if kind == "junk":
        return bytes(draw(st.binary(max_size=40)))
    if kind == "message":  # a whole fragmented message, maybe cut short
        total = draw(st.integers(0, 300_000))
        piece = draw(st.integers(1, 120_000))
        seq = draw(st.integers(1, 6))
        job = FragmentJob(b"m" * total, seq, 0, 2, 0, piece)
        out = b"".join(h + bytes(p) for h, p in job.fragments())
        return out[:draw(st.integers(0, len(out)))] if draw(st.booleans()) else out
    typ = 2 if kind in ("data", "frag") else draw(st.integers(0, 8))
    flags = FLAG_FRAG if kind == "frag" else draw(st.sampled_from([0, 0, 2, 1, 4, 0x80]))
    body = draw(fill)
    if kind == "frag":
        total = draw(st.one_of(st.integers(0, 6000), st.sampled_from(CLAIMS)))
        offset = draw(st.one_of(st.just(0), st.integers(0, 7000)))
        body = FRAG_EXT.pack(offset, total) + body
    length = draw(st.one_of(st.just(16 + len(body)), st.sampled_from(CLAIMS),
                            st.integers(0, 40)))
    version = draw(st.sampled_from([1, 1, 1, 0, 2]))
    header = FRAME_HEADER.pack(length, version, typ, flags, draw(st.integers(0, 4)),
                               draw(st.integers(0, 3)), draw(st.integers(0, 6)))
    return header + body


@st.composite
def raw_frame(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["ok", "ok", "big", "claim", "keepalive", "junk"]))
    if kind == "junk":
        return bytes(draw(st.binary(max_size=12)))
    if kind == "keepalive":
        return encode_raw(b"\x00")
    if kind == "big":
        return encode_raw(b"b" * draw(st.integers(60_000, 300_000)))
    body = draw(fill)
    if kind == "claim":
        return struct.pack("!I", draw(st.sampled_from(CLAIMS))) + body
    return encode_raw(body)


native_soup = st.lists(native_frame(), max_size=8).map(b"".join)
raw_soup = st.lists(raw_frame(), max_size=8).map(b"".join)
cuts = st.lists(st.integers(1, 70_000), min_size=1, max_size=12)


# -- decoders --------------------------------------------------------------------------------
def _native_decoder(accept: bool) -> NativeDecoder:
    ra = Reassembler(64 << 20, MAX_PARTIAL, 128 << 20)
    dec = NativeDecoder(1, "tcp", None, 1 << 20, ra)
    dec.accept_data = accept
    return dec


def _raw_decoder() -> RawDecoder:
    return RawDecoder(1, "tcp", None, 64 << 20)


def _settle(dec: Any, controls: list[tuple[int, bytes]]) -> None:
    """What a session does after each read: take the control frames, go on past a HELLO."""
    while getattr(dec, "control", None):
        controls.extend((typ, payload) for typ, payload, _ in dec.control)
        dec.control = []
        if dec.buffered:
            dec.feed(b"")


def _run(dec: Any, data: bytes, steps: list[int] | None,
         ) -> tuple[list[Received], list[tuple[int, bytes]], int | None]:
    """Feed ``data`` whole (``steps`` None) or through get_buffer in ``steps``-sized reads;
    return (messages, control frames, error code), checking the memory bound on the way."""
    out: list[Received] = []
    controls: list[tuple[int, bytes]] = []
    error: int | None = None
    pos = 0
    try:
        if steps is None:
            dec.feed(data)
            _settle(dec, controls)
            out += dec.take_messages()
            assert dec.held <= _bound(len(data)), (dec.held, len(data))
        i = 0
        while steps is not None and pos < len(data):
            buf = dec.get_buffer(-1)
            n = min(len(buf), _step(steps, i, len(data)), len(data) - pos)
            i += 1
            buf[:n] = data[pos:pos + n]
            pos += n
            dec.buffer_updated(n)
            _settle(dec, controls)
            out += dec.take_messages()
            assert dec.held <= _bound(pos), (dec.held, pos)
    except ProtocolError as exc:
        error = int(exc.code)
        out += dec.take_messages()
        controls.extend((t, p) for t, p, _ in getattr(dec, "control", []))  # still handled
    return [bytes(as_message(m, 0, "tcp", None).data) for m in out], controls, error


@fuzz(100)
@given(native_soup, cuts, st.booleans())
def test_native_decoder_any_input_any_cut(data: bytes, steps: list[int], accept: bool,
                                          ) -> None:
    whole = _run(_native_decoder(accept), data, None)
    cut = _run(_native_decoder(accept), data, steps)
    assert cut == whole
    assert whole[2] is None or whole[2] in set(GoAwayCode)


@fuzz(150)
@given(raw_soup, cuts)
def test_raw_decoder_any_input_any_cut(data: bytes, steps: list[int]) -> None:
    whole = _run(_raw_decoder(), data, None)
    cut = _run(_raw_decoder(), data, steps)
    assert cut == whole
    assert whole[2] is None or whole[2] in set(GoAwayCode)


@fuzz(60)
@given(st.lists(st.integers(0, 300_000), max_size=5), cuts, st.integers(1000, 200_000))
def test_decoders_round_trip_what_the_encoders_make(sizes: list[int], steps: list[int],
                                                    piece: int) -> None:
    payloads = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    native = b""
    for seq, p in enumerate(payloads, 1):
        if len(p) > piece:
            native += b"".join(h + bytes(v) for h, v in
                               FragmentJob(p, seq, 0, 2, 0, piece).fragments())
        else:
            native += encode_data(p, seq, 0, 2)
    assert _run(_native_decoder(True), native, steps) == (payloads, [], None)
    raw = b"".join(encode_raw(p) for p in payloads)
    assert _run(_raw_decoder(), raw, steps) == (payloads, [], None)


# -- the fragment reassembler ----------------------------------------------------------------
op = st.tuples(st.integers(1, 3), st.booleans(), st.integers(0, 5000),
               st.one_of(st.integers(0, 20_000), st.sampled_from(CLAIMS)), st.booleans())


@fuzz(120)
@given(st.lists(op, max_size=30))
def test_reassembler_any_fragments(ops: list[tuple[int, bool, int, int, bool]]) -> None:
    """Consistent or not, fragments only raise ProtocolError; memory follows the bytes
    written; a completed message is exactly its pieces."""
    ra = Reassembler(64 << 20, MAX_PARTIAL, 128 << 20)
    model: dict[int, tuple[int, bytes]] = {}
    written = 0
    try:
        for seq, in_order, n, total, same_total in ops:
            have = model.get(seq)
            if have is not None and same_total:
                total = have[0]
            offset = len(have[1]) if have is not None and in_order else (0 if in_order
                                                                           else n)
            piece = bytes([seq]) * n
            done = ra.add(seq, offset, total, piece, 0, 2, 0)
            written += n
            got = (have[1] if have else b"") + piece
            if done is None:
                model[seq] = (total, got)
            else:
                assert done.data == got and len(got) == total
                model.pop(seq, None)
            assert ra.allocated <= ra.max_bytes
            assert ra.held <= 2 * written + len(ra) * FIRST_CHUNK, (ra.held, written)
    except ProtocolError as exc:
        assert exc.code in (GoAwayCode.PROTOCOL_ERROR, GoAwayCode.MESSAGE_TOO_LARGE)
    ra.clear()
    assert ra.held == 0 and ra.allocated == 0


# -- the gRPC envelope ---------------------------------------------------------------------
@fuzz(300)
@given(st.binary(max_size=200))
def test_envelope_decoder_any_input(data: bytes) -> None:
    try:
        payload, frames, _text = decode_envelope(data)
    except ProtocolError:
        return
    assert len(payload) + len(frames) <= len(data)


@fuzz(150)
@given(st.binary(max_size=3000), st.booleans(), st.lists(st.binary(max_size=300), max_size=5))
def test_envelope_round_trip(data: bytes, text: bool, chunks: list[bytes]) -> None:
    payload, frames, got_text = decode_envelope(encode_payload(data, text))
    assert (bytes(payload), bytes(frames), got_text) == (data, b"", text)
    payload, frames, got_text = decode_envelope(encode_frames(chunks))
    assert (bytes(payload), bytes(frames), got_text) == (b"", b"".join(chunks), False)


# -- sessions: nothing raises, whatever the peer sends ----------------------------------------
OPTS = Options(max_frame_size=1 << 20, max_partial_messages=MAX_PARTIAL)
HELLO = MAGIC + encode_hello(Hello(b"p" * 16, 0, 1 << 20, 64 << 20))


def _session_run(session: Any, data: bytes, steps: list[int], via_buffer: bool,
                 ) -> tuple[list[bytes], int | None]:
    out: list[Received] = []
    pos, i = 0, 0
    while pos < len(data) and not session.closed:
        step = _step(steps, i, len(data))
        i += 1
        if via_buffer:
            buf = session.get_buffer(-1)
            n = min(len(buf), step, len(data) - pos)
            buf[:n] = data[pos:pos + n]
            out += session.buffer_updated(n, 0.0)
        else:
            n = min(step, len(data) - pos)
            out += session.receive_data(data[pos:pos + n], 0.0)
        pos += n
        assert session.decoder.held <= _bound(pos)
    closed = [e for e in session.take_events() if isinstance(e, Closed)]
    return ([bytes(as_message(m, 0, "tcp", None).data) for m in out],
            closed[0].code if closed else None)


@fuzz(80)
@given(native_soup, cuts, st.booleans())
def test_native_session_any_input(data: bytes, steps: list[int], via_buffer: bool) -> None:
    def session() -> NativeSession:
        return NativeSession(OPTS, 2, "tcp", None, 0.0, b"s" * 16)

    cut = _session_run(session(), HELLO + data, steps, via_buffer)
    whole = _session_run(session(), HELLO + data, [len(data) + len(HELLO)], False)
    assert cut == whole


@fuzz(120)
@given(raw_soup, cuts, st.booleans())
def test_raw_session_any_input(data: bytes, steps: list[int], via_buffer: bool) -> None:
    cut = _session_run(RawSession(OPTS, 2, "tcp", None, 0.0), data, steps, via_buffer)
    whole = _session_run(RawSession(OPTS, 2, "tcp", None, 0.0), data, [len(data) or 1], False)
    assert cut == whole


@fuzz(100)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=10))
def test_message_session_any_input(items: list[tuple[bytes, bool]]) -> None:
    """The WebSocket/gRPC raw sink: one carrier message in, one message out."""
    session = MessageSession(Options(max_message_size=200), 3, "websocket", None, 0.0)
    for data, text in items:
        for m in session.receive_message(data, text, 0.0):
            assert isinstance(m, (bytes, Message))
            assert len(as_message(m, 0, "websocket", None).data) <= 200


@st.composite
def datagram(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["frame", "frag", "junk"]))
    if kind == "junk":
        return bytes(draw(st.binary(max_size=60)))
    body = draw(st.binary(max_size=40))
    typ = 2 if kind == "frag" else draw(st.integers(0, 8))
    flags = FLAG_FRAG if kind == "frag" else draw(st.sampled_from([0, 1, 2, 0x80]))
    if kind == "frag":
        body = FRAG_EXT.pack(draw(st.integers(0, 3000)),
                             draw(st.one_of(st.integers(0, 3000), st.sampled_from(CLAIMS)))
                             ) + body
    length = draw(st.one_of(st.just(16 + len(body)), st.integers(0, 100)))
    return FRAME_HEADER.pack(length, draw(st.sampled_from([1, 1, 2])), typ, flags,
                             draw(st.integers(0, 4)), draw(st.integers(0, 2)),
                             draw(st.integers(0, 8))) + body


@fuzz(100)
@given(st.lists(datagram(), max_size=25), st.integers(0, 2**32 - 1))
def test_datagram_session_any_datagrams(dgrams: list[bytes], seed: int) -> None:
    """A listener's UDP peer: any datagrams, in any order, never raise; reassembly stays
    within the peer's and the listener's limits."""
    opts = Options(max_reassembly_bytes=8192, max_total_reassembly_bytes=6000,
                   max_datagram_payload=1200)
    budget = ReassemblyBudget(opts.max_total_reassembly_bytes)
    session = DatagramSession(opts, 4, "udp", ("127.0.0.1", 9), 0.0, native=True,
                              role="server", budget=budget)
    random.Random(seed).shuffle(dgrams)
    for d in dgrams:
        session.receive_datagram(d, 0.0)
        assert session.held <= opts.max_reassembly_bytes
        assert budget.used <= budget.limit
    session.take_messages()
