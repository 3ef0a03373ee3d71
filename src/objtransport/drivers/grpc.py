"""gRPC on grpcio's asyncio API (``grpc.aio``): one connection is one bidirectional stream.

The contract is ``proto/objtransport/v1/transport.proto`` (shipped in the wheel): service
``objtransport.v1.Transport``, ``rpc Connect(stream Envelope) returns (stream Envelope)``.
One :class:`GrpcLink` per ``Connect`` call pumps Envelopes between the call and a session:

* **native** (the client sends the metadata ``objtransport-framing: native``, the listener
  answers with it in its initial metadata): each Envelope's ``frames`` field is a piece of the
  native byte stream, fed to ``NativeSession.receive_data``; whatever the session queued while
  the previous Envelope was being written leaves as one Envelope (about ``CARRIER_MAX``),
  so grpc.aio's ~70 µs per message is paid once per batch;
* **raw** (any other peer, e.g. a client generated from the .proto): one Envelope ``payload``
  is one application message (:class:`~objtransport.sansio.message.MessageSession`); liveness
  is HTTP/2 keepalive, there is no RTT figure.

Names, sizes, status mapping, credentials and options live in :mod:`.grpc_config`.
Envelopes are encoded and decoded by hand (:mod:`objtransport.sansio.envelope`): no protoc,
no generated code, and no protobuf object per message. A reader and a writer per link (owned
by it; the reader writes a small carrier's answers itself, between reads, as a plain gRPC
handler does; in raw mode a message that finds the call idle skips the queue: counted as
sent, its Envelope is written from the sender's own step, see :mod:`.eager`, or by the
reader when a handler answers during a delivery); the session's deadline is filed in the
loop's wheel when far (keepalive), a near one gets a ``loop.call_at``
(:class:`~.wheel_timer.WheelTimer`). Each client link has a channel of its own
(``grpc.use_local_subchannel_pool``), so each connection attempt is a real connect that
objtransport's backoff and breaker see. Opening a call and serving live in
:mod:`.grpc_driver`, the listener side (the server, ``grpc.health.v1.Health``, refusals,
token checks) in :mod:`.grpc_listener`. gRPC status codes and exceptions are mapped into
the objtransport tree (here, in the driver and in the listener) and never reach the
caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

import grpc

from ..exceptions import ProtocolError
from ..logfields import log_fields
from ..sansio.core import AnySession
from ..sansio.envelope import decode_envelope, encode_payload
from ..sansio.framing import GoAwayCode
from ..sansio.message import MessageSession
from . import eager
from .base import LinkParts
from .grpc_config import (
    CARRIER_MAX,
    CARRIER_START,
    FRAMING_KEY,
    LOST,
    METHOD,
    OK,
    SERVICE,
    status_for_close,
)
from .grpc_listener import GrpcServer
from .grpc_write import ANSWER_MAX, EnvelopeWriter
from .stopping import stop_by

__all__ = ["CARRIER_MAX", "FRAMING_KEY", "METHOD", "SERVICE", "GrpcLink",
           "GrpcServer"]

log = logging.getLogger("objtransport.grpc")


class GrpcLink(EnvelopeWriter):
    """One ``Connect`` call bound to one session (native or message): ``call`` and
    ``channel`` on a client, ``context`` on a listener."""

    def __init__(self, session: AnySession, parts: LinkParts, peer: Any, *,
                 call: Any = None, channel: grpc.aio.Channel | None = None,
                 context: Any = None) -> None:
        self._init_link(session, parts, peer)
        self._call = call
        self._channel = channel
        self._context = context
        self.client = call is not None
        io = call if call is not None else context
        self._read: Callable[[], Any] = io.read
        self._write: Callable[[bytes], Any] = io.write
        #: listener: the writer is done, the handler may end the call
        self._end: asyncio.Future[None] = self.loop.create_future()
        self._reader: asyncio.Task[None] | None = None
        #: the reader is handing a small carrier over: what it queues, the reader writes
        self._delivering = False
        self._owed = False
        #: raw: the first answer of a delivery, counted as sent, for the reader to write
        self._owed_env: tuple[bytes, int, float] | None = None
        if self.native:  # the budget per Envelope: doubling per Envelope up to CARRIER_MAX
            self.carrier_max = CARRIER_START
        #: raw: a message queued on an idle link is written at once (see ``_on_wake``)
        self._eager = self._msession is not None
        #: the writes started in a sender's step (raw): ended with the link (``run``)
        self._eager_writes = eager.Eager(self.loop)
        if self._msession is not None:  # raw: a message for an idle call skips the queue
            self._raw: MessageSession = self._msession
            self.queue = self._queue_at_once  # type: ignore[method-assign]

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Client side: run the reader in a task of its own."""
        self._reader = self.loop.create_task(self.run(), name="objtransport-grpc-reader")
        self._reader.add_done_callback(_log_failure)

    async def run(self) -> None:
        """Pump until the call ends (a listener's handler awaits this)."""
        self._writer = self.loop.create_task(self._write_loop(),
                                             name="objtransport-grpc-writer")
        self._process_events()
        self._kick()
        self._rearm()
        try:
            if self.client:
                await self._read_loop()
                await self._writer_done()
            else:
                await self._serve()
        finally:
            self._finish()
            try:  # cancelled here (past its owner's deadline), the channel still closes
                await self._eager_writes.aclose()
            finally:
                if self._channel is not None:
                    await self._channel.close()

    async def _serve(self) -> None:
        """Listener: read in a task until the writer ends the call or the reader stops."""
        reader = self.loop.create_task(self._read_loop(), name="objtransport-grpc-reader")
        self._reader = reader
        try:
            await asyncio.wait([reader, self._end], return_when=asyncio.FIRST_COMPLETED)
            if not self._end.done() and self.session.closed:
                self._kick()  # what is queued still goes (a raw client that half-closed)
                await asyncio.wait([self._end], timeout=self.session.options.timeout)
        finally:
            if not reader.done():
                reader.cancel()

    async def _read_loop(self) -> None:
        session = self.session
        msession = self._msession
        read = self._read
        eof = grpc.aio.EOF
        now = monotonic()
        try:
            while not session.closed:
                if self._read_pauses:
                    await self._resume.wait()
                data = await read()
                if data is eof:
                    await self._eof()
                    return
                now = monotonic()
                payload, frames, text = decode_envelope(data)
                if msession is not None:
                    if type(payload) is not bytes:
                        payload = bytes(payload)
                    msgs = msession.receive_message(payload, text, now)
                else:
                    msgs = session.receive_data(frames, now)
                if self.receive_bucket is not None:
                    await self._pace_receive(len(data), now)
                if len(data) > ANSWER_MAX:
                    self._delivered(msgs)
                    continue
                self._delivering = True
                try:
                    self._delivered(msgs)
                finally:
                    self._delivering = False
                if self._owed:
                    self._owed = False
                    owed = self._owed_env
                    if owed is None:
                        await self._write_now()
                    else:
                        self._owed_env = None
                        self._writing = True
                        await self._write_one(*owed)
        except grpc.aio.AioRpcError as exc:
            self._call_ended(exc.code(), exc.details() or "")
        except ProtocolError as exc:
            session.fail(str(exc), exc.code)
            self._process_events()

    async def _eof(self) -> None:
        """The peer ended its side of the stream."""
        session = self.session
        if self.client:
            call = self._call
            self._call_ended(await call.code(), await call.details() or "")
        elif self.native:
            session.connection_lost("the client ended the stream without GOAWAY")
        else:  # a raw client is done sending: what is queued for it still goes
            session.peer_closed(GoAwayCode.NORMAL, "the client ended its stream",
                                keep_queued=True)
        self._process_events()

    def _call_ended(self, code: grpc.StatusCode, details: str) -> None:
        """Client: the listener ended the call with ``code``: record it on the session."""
        session = self.session
        if session.closed:
            return
        if code is OK:
            if self.native:
                session.connection_lost("the listener ended the call without GOAWAY")
            else:
                session.peer_closed(GoAwayCode.NORMAL, "the server ended the call")
        elif code in LOST:
            session.connection_lost(f"{code.name}: {details}")
        elif code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            session.peer_closed(GoAwayCode.MESSAGE_TOO_LARGE, f"RESOURCE_EXHAUSTED: {details}")
        else:
            session.peer_closed(GoAwayCode.PROTOCOL_ERROR, f"{code.name}: {details}")
        self._process_events()

    async def _writer_done(self) -> None:
        """Client: the session ended; let the writer send what is left and half-close
        (bounded by ``timeout``), then read until the listener ends the call."""
        timeout = self.session.options.timeout
        writer = self._writer
        if self._call is not None and self._call.done():
            # the call is over (its status came): nothing more can be written or read, so
            # the writer is not waited for (a write may wait for grpc to report the end)
            if writer is not None and not writer.done():
                writer.cancel()
                await asyncio.wait([writer], timeout=timeout)
            return
        if writer is not None and not writer.done():
            self._kick()
            await asyncio.wait([writer], timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                while await self._call.read() is not grpc.aio.EOF:
                    pass
        except (grpc.aio.AioRpcError, TimeoutError):
            pass

    def _finish(self) -> None:
        self._finish_common()
        if self._call is not None:
            self._call.cancel()
        if not self._end.done():
            self._end.set_result(None)

    def final_status(self) -> tuple[grpc.StatusCode, str]:
        """Listener: the status to end the call with."""
        if self._aborted:
            return grpc.StatusCode.UNAVAILABLE, "connection aborted"
        s = self.session
        return status_for_close(s.close_code), s.close_reason

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview, stream: int = 0, priority: int = 2,
             text: bool = False) -> bool:
        """Queue one message; return True when the caller should wait (``wait_writable``).
        The writer task sends everything queued by then as one Envelope (native)."""
        self.last_seq = self.session.send_message(data, stream, priority, text)
        self._on_wake()
        rs = self._rs
        return self._sched.pending_bytes > self.max_pending or (
            rs is not None and rs.unacked_bytes > self.max_unacked)

    def _queue_at_once(self, data: bytes | bytearray | memoryview, stream: int = 0,
                       priority: int = 2, text: bool = False) -> bool:
        """Raw ``queue``: a message that finds the call idle (nothing queued, no write in
        flight, no pacing, at most 16 KiB) is not queued but counted as sent
        (``send_at_once``) and its Envelope written from the sender's step
        (:meth:`.eager.Eager.start`), or, during a delivery (a handler's answer), by the reader
        right after it; anything else takes the session's ``queue``. Same counts, order,
        limits and errors, less work per message (no queue header in and out)."""
        raw = self._raw
        size = len(data)
        if (self._writing or size > ANSWER_MAX or self.pacer.buckets
                or raw.scheduler.pending_bytes or raw.has_final or self._owed_env):
            return raw.queue(data, stream, priority, text)
        now = monotonic()
        raw.send_at_once(size, priority, now)
        if self._delivering:  # a handler's answer: the reader writes it after the delivery
            self._owed_env = (encode_payload(data, text), size, now)
            self._owed = True
            return False
        self._writing = True
        self._eager_writes.start(self._write_one(encode_payload(data, text), size, now))
        return False

    def _on_wake(self) -> None:
        if self._delivering:
            self._owed = True  # the reader writes it once the delivery is over
        elif self._eager and not self._writing and not self._wake.is_set():
            # raw: a lone message on an idle link is written from here, in the sender's
            # step (no wake-up of the writer task); what is queued meanwhile waits for it
            self._eager_writes.start(self._write_now())
        else:
            self._kick()

    def _answer(self) -> None:
        self._on_wake()

    async def _write_loop(self) -> None:
        session = self.session
        wake = self._wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                if self._writing:  # _write_now's write is in flight: it wakes us after it
                    self._rekick = True
                    continue
                self._writing = True
                try:
                    await self._write_queued()
                finally:
                    self._writing = False
                self._after_write()
                if session.closed and not session.scheduler.pending_bytes \
                        and not session.has_final:
                    await self._end_stream()
                    return
        except Exception as exc:  # noqa: BLE001 - grpc raises several kinds once a call ends
            self._write_failed(exc)

    async def _end_stream(self) -> None:
        if self._call is not None:
            await self._call.done_writing()
        elif not self._end.done():
            self._end.set_result(None)

    def _write_failed(self, exc: Exception) -> None:
        """A write failed: the call is over. A client's reader learns the status; a
        listener records the loss and ends the handler."""
        log.debug("gRPC write to %s failed: %r", self.peer, exc,
                  extra=log_fields(None, f"grpc://{self.peer}", "grpc"))
        if self.client:
            return
        if not self.session.closed:
            self.session.connection_lost(f"the call ended: {exc}")
            self._process_events()
        if not self._end.done():
            self._end.set_result(None)

    # -- closing ---------------------------------------------------------------------------
    def abort(self) -> None:
        """Drop the call at once, discarding what is queued."""
        self._aborted = True
        if self._call is not None:
            self._call.cancel()
        elif not self._end.done():
            self._end.set_result(None)

    async def wait_stopped(self, deadline: float) -> bool:
        """(client; :class:`~.base.StoppableLink`) After a close, an abort or the call's
        end: wait for the reader task (``run``) to end, as grpc reports the end of the
        call, until ``deadline`` (loop time); then cancel it (:func:`.stopping.stop_by`)."""
        reader = self._reader if self.client else None
        return reader is None or await stop_by(reader, deadline)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("gRPC link failed", exc_info=task.exception())
