"""Coverage-guided fuzzing with atheris (libFuzzer) of the decoders and sessions.

``make fuzz`` runs it when atheris installs: ``python tests/fuzz_atheris.py -runs=N``.
The first input byte picks the target, the next ones the read sizes, the rest is the peer's
bytes. Anything but a ``ProtocolError`` from a decoder (or any exception from a session), or
memory held beyond a small multiple of the bytes fed, is a crash that libFuzzer reports with
the input that caused it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from objtransport.config import Options
    from objtransport.exceptions import ProtocolError
    from objtransport.sansio.datagram import DatagramSession
    from objtransport.sansio.envelope import decode_envelope
    from objtransport.sansio.fragmentation import FIRST_CHUNK, Reassembler
    from objtransport.sansio.framing import MAGIC, Hello, encode_hello
    from objtransport.sansio.message import MessageSession
    from objtransport.sansio.native_decoder import NativeDecoder
    from objtransport.sansio.raw import RawSession
    from objtransport.sansio.raw_decoder import RawDecoder
    from objtransport.sansio.reassembly import ReassemblyBudget
    from objtransport.sansio.session import NativeSession

OPTS = Options(max_frame_size=1 << 20, max_partial_messages=4)
HELLO = MAGIC + encode_hello(Hello(b"p" * 16, 0, 1 << 20, 64 << 20))


def _bound(fed: int) -> int:
    return 4 * fed + 5 * 2 * FIRST_CHUNK


def _decode(dec: NativeDecoder | RawDecoder, data: bytes, steps: list[int]) -> None:
    pos = i = 0
    try:
        while pos < len(data):
            buf = dec.get_buffer(-1)
            n = min(len(buf), steps[i % len(steps)], len(data) - pos)
            i += 1
            buf[:n] = data[pos:pos + n]
            pos += n
            dec.buffer_updated(n)
            control = getattr(dec, "control", None)
            while control:
                dec.control = []  # type: ignore[union-attr]
                dec.feed(b"")
                control = dec.control  # type: ignore[union-attr]
            dec.take_messages()
            if dec.held > _bound(pos):
                raise AssertionError(f"{dec.held} bytes held after {pos} fed")
    except ProtocolError:
        pass


def _session(session: NativeSession | RawSession, data: bytes, steps: list[int]) -> None:
    pos = i = 0
    while pos < len(data) and not session.closed:
        n = min(steps[i % len(steps)], len(data) - pos)
        i += 1
        session.receive_data(data[pos:pos + n], 0.0)
        pos += n
        if session.decoder.held > _bound(pos):
            raise AssertionError(f"{session.decoder.held} bytes held after {pos} fed")


def test_one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    target = fdp.ConsumeIntInRange(0, 6)
    steps = [fdp.ConsumeIntInRange(1, 70_000) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    if target == 0:
        dec = NativeDecoder(1, "tcp", None, 1 << 20, Reassembler(64 << 20, 4, 128 << 20))
        dec.accept_data = True
        _decode(dec, data, steps)
    elif target == 1:
        _decode(RawDecoder(1, "tcp", None, 64 << 20), data, steps)
    elif target == 2:
        try:
            decode_envelope(data)
        except ProtocolError:
            pass
    elif target == 3:
        _session(NativeSession(OPTS, 2, "tcp", None, 0.0, b"s" * 16), HELLO + data, steps)
    elif target == 4:
        _session(RawSession(OPTS, 2, "tcp", None, 0.0), data, steps)
    elif target == 5:
        budget = ReassemblyBudget(6000)
        session = DatagramSession(Options(max_reassembly_bytes=8192), 4, "udp", None, 0.0,
                                  native=True, role="server", budget=budget)
        for k in range(0, len(data), 64):
            session.receive_datagram(data[k:k + steps[0] % 200], 0.0)
            if budget.used > budget.limit or session.held > 8192:
                raise AssertionError("datagram reassembly past its limits")
    else:
        session_m = MessageSession(Options(max_message_size=200), 3, "websocket", None, 0.0)
        session_m.receive_message(data, bool(steps[0] & 1), 0.0)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
