"""Splitting large messages into fragments and putting them together again, with bounds.

On stream transports the fragments of one message arrive in order (fragments of different
messages may interleave), so the reassembler requires each piece to start where the previous
one ended; anything else is a protocol error. Limits are checked before allocating, and
memory grows with the bytes that arrive, never with the total a peer declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..exceptions import ProtocolError
from .framing import GoAwayCode, encode_data_fragment_header
from .reassembly import ReassemblyBudget

__all__ = ["BodyBuffer", "BufferRecycler", "FragmentJob", "Partial", "Reassembler"]


#: a body received in place starts with a chunk this large; each next chunk is as large as
#: everything received so far (the body's memory at most doubles ahead of its bytes) ...
FIRST_CHUNK = 64 * 1024
#: ... and at most this large: a claimed length commits memory only as its bytes arrive
CHUNK_LIMIT = 1024 * 1024
#: the chunk kept ready for the next large body (``expect``) has this much room beyond it:
#: the read that completes the body can bring the next frame's header along (28 bytes at
#: most, see DecoderBase.get_buffer)
SLACK = 32


class BufferRecycler:
    """Keeps the chunks of the last large bodies for the next ones.

    A fresh ``bytearray`` is zero-filled and, with glibc, a large one is usually a new
    ``mmap`` whose every page faults on first touch: on a 2-vCPU VM that cost more than the
    transfer itself (0.5 GB/s against 2.3 GB/s with the buffer reused). Messages are copied
    out of their chunks on completion, so the chunks can be reused at once. At most
    ``max_keep`` bytes of chunks are kept per connection, the largest first.
    """

    __slots__ = ("_spares", "_kept", "max_keep")

    def __init__(self, max_keep: int = 4 * 1024 * 1024) -> None:
        #: smallest first; made by the first kept chunk (most connections never keep one)
        self._spares: list[bytearray] | None = None
        self._kept = 0
        self.max_keep = max_keep

    def take(self, size: int) -> bytearray:
        """The largest kept chunk (of any size, contents undefined), else a new one of
        ``size`` bytes."""
        if self._spares:
            buf = self._spares.pop()
            self._kept -= len(buf)
            return buf
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        if len(buf) < FIRST_CHUNK or len(buf) > self.max_keep:
            return
        spares = self._spares
        if spares is None:
            spares = self._spares = []
        spares.append(buf)
        self._kept += len(buf)
        if len(spares) > 1 and len(buf) < len(spares[-2]):
            spares.sort(key=len)
        while self._kept > self.max_keep:
            self._kept -= len(spares.pop(0))

    def expect(self, size: int) -> None:
        """A body of ``size`` bytes arrived in several chunks: keep one chunk ready that holds
        the next such body whole (at most ``CHUNK_LIMIT``), as received bytes proved it."""
        size = min(size, CHUNK_LIMIT)
        if size >= FIRST_CHUNK and not (self._spares and len(self._spares[-1]) >= size):
            self.give(bytearray(size + SLACK))


class BodyBuffer:
    """The body of one message of a declared ``size``, received in place.

    The bytes go into chunks allocated as they arrive (see ``FIRST_CHUNK`` / ``CHUNK_LIMIT``):
    a peer that claims 64 MiB and sends one byte costs one small chunk, not 64 MiB. Each chunk
    is charged to the shared ``budget``, if any. Write with :meth:`write` (a copy), or into
    :meth:`space` then :meth:`wrote` (``recv_into``); call :meth:`ensure_space` before
    :meth:`space` when the current chunk may be full. :meth:`take` joins the chunks once
    (the only copy of a body received in place) and gives them back; :meth:`drop` gives
    them back unused.
    """

    __slots__ = ("size", "got", "_full", "_cur", "_pos", "_recycler", "_budget", "held")

    def __init__(self, size: int, recycler: BufferRecycler,
                 budget: ReassemblyBudget | None = None) -> None:
        self.size = size
        self.got = 0  # bytes written so far
        self._full: list[bytearray] = []  # chunks written to the end
        self._cur = bytearray()
        self._pos = 0
        self._recycler = recycler
        self._budget = budget
        self.held = 0  # bytes of chunks attached (charged to the budget)

    def ensure_space(self, hint: int = FIRST_CHUNK) -> None:
        """Attach the next chunk if the current one is full and bytes are still expected:
        ``hint`` bytes (about to arrive), or as many as arrived so far, at most
        ``CHUNK_LIMIT``. Raises ``ProtocolError`` when the shared budget refuses it."""
        if self._pos < len(self._cur) or self.got >= self.size:
            return
        n = min(self.size - self.got, CHUNK_LIMIT, max(hint, self.got))
        chunk = self._recycler.take(n)
        budget = self._budget
        if budget is not None and not budget.try_charge(len(chunk)):
            self._recycler.give(chunk)
            raise ProtocolError(
                f"the listener's reassembly memory ({budget.used} of {budget.limit} bytes, "
                "max_total_reassembly_bytes) is used up by incomplete messages",
                GoAwayCode.OVERLOADED)
        self.held += len(chunk)
        if self._pos:
            self._full.append(self._cur)
        self._cur = chunk
        self._pos = 0

    def space(self, end: int, beyond: int = 0) -> memoryview:
        """Where the next bytes go, up to body offset ``end`` (after :meth:`ensure_space`),
        and ``beyond`` bytes more if the chunk has room for them (bytes past the body that
        a read may bring along: the caller copies them out before :meth:`wrote` goes on)."""
        pos = self._pos
        return memoryview(self._cur)[pos:pos + min(len(self._cur) - pos,
                                                   end - self.got + beyond)]

    def wrote(self, n: int) -> None:
        """``n`` bytes were written into the last :meth:`space`."""
        self._pos += n
        self.got += n

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` in (the caller checked it fits within ``size``)."""
        view = memoryview(data)
        while view:
            self.ensure_space(len(view))
            room = self.space(self.size)
            k = min(len(room), len(view))
            room[:k] = view[:k]
            self.wrote(k)
            view = view[k:]

    def take(self) -> bytes:
        """The body as one ``bytes``; the chunks go back to the recycler."""
        last = memoryview(self._cur)[:self._pos]
        if self._full:
            data = b"".join([*self._full, last])
            last.release()
            self.drop()
            self._recycler.expect(self.size)
        else:
            data = bytes(last)
            last.release()
            self.drop()
        return data

    def drop(self) -> None:
        """Give the chunks back (and their charge to the budget)."""
        give = self._recycler.give
        for chunk in self._full:
            give(chunk)
        if self._cur:
            give(self._cur)
        self._full = []
        self._cur = bytearray()
        self._pos = 0
        if self._budget is not None and self.held:
            self._budget.release(self.held)
        self.held = 0


class FragmentJob:
    """A large message waiting to go out, one fragment at a time.

    ``next_chunks()`` returns the header and a zero-copy view of the next piece.
    """

    __slots__ = ("view", "seq", "stream", "priority", "flags", "offset", "total", "piece")

    def __init__(self, data: bytes | bytearray | memoryview, seq: int, stream: int,
                 priority: int, flags: int, piece: int) -> None:
        self.view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self.seq = seq
        self.stream = stream
        self.priority = priority
        self.flags = flags
        self.offset = 0
        self.total = len(self.view)
        self.piece = piece

    @property
    def remaining(self) -> int:
        return self.total - self.offset

    @property
    def done(self) -> bool:
        return self.offset >= self.total

    def next_chunks(self, size: int = 0) -> tuple[bytes, memoryview]:
        """The next fragment as (header, piece) of ``size`` bytes at most (0: the job's
        ``piece``); advances the job."""
        start = self.offset
        end = min(start + (size or self.piece), self.total)
        self.offset = end
        header = encode_data_fragment_header(end - start, self.seq, self.stream, self.priority,
                                             start, self.total, self.flags)
        return header, self.view[start:end]

    def fragments(self) -> Iterator[tuple[bytes, memoryview]]:
        while not self.done:
            yield self.next_chunks()


@dataclass(slots=True)
class Partial:
    body: BodyBuffer
    total: int
    stream: int
    priority: int
    flags: int
    data: bytes = b""  # the message, once complete

    @property
    def received(self) -> int:
        return self.body.got


class Reassembler:
    """Holds partially received messages of one connection, keyed by message seq.

    Bounds: each message at most ``max_message_size``; at most ``max_partial`` messages in
    progress; their declared totals at most ``max_bytes`` (``allocated``). A violation raises
    ``ProtocolError`` with the GOAWAY code to send. Memory is not taken on a declared total:
    each message grows with its bytes (:class:`BodyBuffer`), charged to ``budget`` (shared by
    a listener's connections) when there is one.
    """

    __slots__ = ("max_message_size", "max_partial", "max_bytes", "_partials", "allocated",
                 "recycler", "budget")

    def __init__(self, max_message_size: int, max_partial: int, max_bytes: int,
                 recycler: BufferRecycler | None = None,
                 budget: ReassemblyBudget | None = None) -> None:
        self.recycler = recycler or BufferRecycler()
        self.budget = budget
        self.max_message_size = max_message_size
        self.max_partial = max_partial
        self.max_bytes = max_bytes
        self._partials: dict[int, Partial] = {}
        self.allocated = 0  # declared totals of the messages in progress

    def __len__(self) -> int:
        return len(self._partials)

    @property
    def held(self) -> int:
        """Bytes of memory the messages in progress hold."""
        return sum(p.body.held for p in self._partials.values())

    def begin(self, seq: int, offset: int, piece_len: int, total: int, stream: int,
              priority: int, flags: int) -> Partial:
        """Validate a fragment header and return the partial message it writes into.

        The caller then writes ``piece_len`` bytes to ``partial.body`` and calls
        :meth:`advance`.
        """
        if offset + piece_len > total:
            raise ProtocolError(f"fragment of message {seq} overruns its total {total}",
                                GoAwayCode.PROTOCOL_ERROR)
        partial = self._partials.get(seq)
        if partial is None:
            if offset != 0:
                raise ProtocolError(f"fragment of message {seq} starts at {offset}, not 0",
                                    GoAwayCode.PROTOCOL_ERROR)
            if total > self.max_message_size:
                raise ProtocolError(
                    f"fragmented message of {total} bytes exceeds max_message_size "
                    f"({self.max_message_size})", GoAwayCode.MESSAGE_TOO_LARGE)
            if len(self._partials) >= self.max_partial:
                raise ProtocolError(f"more than {self.max_partial} partial messages",
                                    GoAwayCode.MESSAGE_TOO_LARGE)
            if self.allocated + total > self.max_bytes:
                raise ProtocolError(
                    f"reassembly memory would exceed {self.max_bytes} bytes",
                    GoAwayCode.MESSAGE_TOO_LARGE)
            partial = Partial(BodyBuffer(total, self.recycler, self.budget), total, stream,
                              priority, flags)
            self._partials[seq] = partial
            self.allocated += total
        elif total != partial.total:
            raise ProtocolError(f"fragment of message {seq} declares total {total}, "
                                f"earlier fragments {partial.total}", GoAwayCode.PROTOCOL_ERROR)
        elif offset != partial.received:
            raise ProtocolError(f"fragment of message {seq} at offset {offset}, expected "
                                f"{partial.received}", GoAwayCode.PROTOCOL_ERROR)
        return partial

    def advance(self, seq: int) -> Partial | None:
        """After a piece was written: return the partial once it is complete (its ``data``
        set, and forgotten), else None."""
        partial = self._partials[seq]
        if partial.body.got < partial.total:
            return None
        del self._partials[seq]
        self.allocated -= partial.total
        partial.data = partial.body.take()
        return partial

    def add(self, seq: int, offset: int, total: int, piece: bytes | memoryview, stream: int,
            priority: int, flags: int) -> Partial | None:
        """Copy one whole fragment in; return the complete partial when it was the last."""
        partial = self.begin(seq, offset, len(piece), total, stream, priority, flags)
        partial.body.write(piece)
        return self.advance(seq)

    def clear(self) -> None:
        """Forget every message in progress and give its memory back."""
        for partial in self._partials.values():
            partial.body.drop()
        self._partials.clear()
        self.allocated = 0
