"""The blocking API, driven from plain threads: no asyncio in this file."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from objtransport import Message, ReceiveTimeout, ServiceNotRunning
from objtransport.sync import NetworkTransport

pytestmark = pytest.mark.timeout(60)


def _sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "objtransport-sync"]


def test_connect_send_receive_request_and_metrics() -> None:
    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0)
        echo = server.listen("127.0.0.1", 0, handler=lambda m: b"echo:" + m.data)
        conn = client.connect("127.0.0.1", listener.port)
        client.send_data(conn, b"hello", headers={"k": "v"})
        msg = server.receive(timeout=5.0)
        assert (msg.data, msg.headers) == (b"hello", {"k": b"v"})
        with pytest.raises(ReceiveTimeout):
            server.receive(timeout=0.05)
        econn = client.connect("127.0.0.1", echo.port)
        assert client.request(econn, b"x", timeout=5.0).data == b"echo:x"
        client.send_json(conn, {"a": 1})
        assert server.receive(timeout=5.0).json() == {"a": 1}
        assert client.get_metrics().messaging["requests_sent"] == 1
        assert set(client.connections()) == {conn, econn}
        assert client.connection_info(conn).state == "connected"


def test_receive_users_reply_through_the_blocking_api() -> None:
    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0)
        conn = client.connect("127.0.0.1", listener.port)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.request, conn, b"q", timeout=5.0)
            msg = server.receive(timeout=5.0)
            assert msg.expects_reply
            server.reply(msg, b"a")
            assert pending.result(5.0).data == b"a"


def test_many_threads_share_one_instance() -> None:
    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0, handler=lambda m: m.data[::-1])
        conn = client.connect("127.0.0.1", listener.port)
        sink = server.listen("127.0.0.1", 0)
        sconn = client.connect("127.0.0.1", sink.port)

        def work(t: int) -> list[bytes]:
            out = []
            for i in range(50):
                client.send_data(sconn, b"%d-%d" % (t, i))
                out.append(client.request(conn, b"%d:%d" % (t, i), timeout=10.0).data)
            return out

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert results == [[(b"%d:%d" % (t, i))[::-1] for i in range(50)] for t in range(8)]
        got = sorted(server.receive(timeout=5.0).data for _ in range(400))
        assert got == sorted(b"%d-%d" % (t, i) for t in range(8) for i in range(50))


def test_messages_iterates_in_a_thread_and_ends_when_closed() -> None:
    server = NetworkTransport()
    seen: list[bytes] = []
    ended = threading.Event()

    def consume() -> None:
        for msg in server.messages():
            seen.append(msg.data)
        ended.set()

    listener = server.listen("127.0.0.1", 0)
    consumer = threading.Thread(target=consume)
    consumer.start()
    with NetworkTransport() as client:
        conn = client.connect("127.0.0.1", listener.port)
        for i in range(20):
            client.send_data(conn, b"%d" % i)
        client.flush(conn)
        deadline = time.monotonic() + 5.0
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    server.close()
    assert ended.wait(5.0)
    consumer.join(5.0)
    assert seen == [b"%d" % i for i in range(20)]


def test_a_blocked_receive_ends_when_another_thread_closes() -> None:
    net = NetworkTransport()
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            net.receive()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=wait_forever)
    t.start()
    time.sleep(0.05)
    net.close()
    t.join(5.0)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ServiceNotRunning)
    with pytest.raises(ServiceNotRunning):
        net.connections()
    net.close()  # idempotent


def test_blocking_calls_from_a_handler_raise_and_send_nowait_works() -> None:
    problems: list[BaseException] = []
    with NetworkTransport() as server, NetworkTransport() as client:

        def handler(msg: Message) -> None:
            try:
                server.send_data(msg.conn_id, b"would deadlock")
            except RuntimeError as exc:
                problems.append(exc)
            server.send_nowait(msg.conn_id, b"pong")

        listener = server.listen("127.0.0.1", 0, handler=handler)
        conn = client.connect("127.0.0.1", listener.port)
        client.send_data(conn, b"ping")
        assert client.receive(conn, timeout=5.0).data == b"pong"
    assert len(problems) == 1 and "handler" in str(problems[0])


def test_an_unreferenced_instance_is_closed_by_the_garbage_collector() -> None:
    before = len(_sync_threads())
    net = NetworkTransport()
    net.listen("127.0.0.1", 0)
    assert len(_sync_threads()) == before + 1
    del net
    gc.collect()
    deadline = time.monotonic() + 5.0
    while len(_sync_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_sync_threads()) == before


def test_the_interpreter_exits_promptly_with_an_instance_left_open() -> None:
    script = """
from objtransport.sync import NetworkTransport
server = NetworkTransport()
client = NetworkTransport()
listener = server.listen("127.0.0.1", 0, handler=lambda m: m.data)
conn = client.connect("127.0.0.1", listener.port)
assert client.request(conn, b"ok").data == b"ok"
client.send_data(conn, b"left queued")
print("done", flush=True)
"""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 10.0


def test_the_readme_sync_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("**Blocking API**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = "\n".join(line[2:] for line in code.splitlines())  # the list item's indent
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "b'HELLO'"


def test_messages_fetches_ahead_and_leaving_the_loop_loses_nothing() -> None:
    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0)
        a = client.connect("127.0.0.1", listener.port)
        b = client.connect("127.0.0.1", listener.port)
        for i in range(300):
            client.send_data(a, b"a%d" % i)
            client.send_data(b, b"b%d" % i)
        client.flush(a, timeout=10.0)
        client.flush(b, timeout=10.0)
        got: list[bytes] = []
        for n, msg in enumerate(server.messages()):  # fetches up to 256, left after 7
            got.append(msg.data)
            if n == 6:
                break
        got.append(server.receive(timeout=5.0).data)  # the kept ones come first
        got += [m.data for m in server.receive_many(max_messages=50, timeout=5.0)]
        for n, msg in enumerate(server.messages()):
            got.append(msg.data)
            if n == 99:
                break
        deadline = time.monotonic() + 20
        while len(got) < 600 and time.monotonic() < deadline:
            got += [m.data for m in server.receive_many(timeout=5.0)]
        assert sorted(got) == sorted([b"a%d" % i for i in range(300)]
                                     + [b"b%d" % i for i in range(300)])
        for prefix in (b"a", b"b"):  # each connection's messages in their order
            mine = [d for d in got if d.startswith(prefix)]
            assert mine == [prefix + b"%d" % i for i in range(300)]


def test_messages_of_one_connection_skip_the_others_kept_for_later() -> None:
    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0)
        a = client.connect("127.0.0.1", listener.port)
        b = client.connect("127.0.0.1", listener.port)
        client.send_data(a, b"a0")
        first = server.receive(timeout=5.0)  # a's id on the server side
        for i in range(1, 20):
            client.send_data(b, b"b%d" % i)
            client.send_data(a, b"a%d" % i)
        client.flush(a, timeout=10.0)
        client.flush(b, timeout=10.0)
        deadline = time.monotonic() + 10
        while server.get_metrics().messages_received < 39 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the loop thread's progress, bounded
        seen = []
        for msg in server.messages():  # prefetches both connections' messages
            seen.append(msg.data)
            break
        rest_a = []
        while len(rest_a) + len([d for d in seen if d.startswith(b"a")]) < 19:
            rest_a += [m.data for m in server.receive_many(first.conn_id, timeout=5.0)]
        a_got = [d for d in seen if d.startswith(b"a")] + rest_a
        assert a_got == [b"a%d" % i for i in range(1, 20)]
        b_got = [d for d in seen if d.startswith(b"b")]
        while len(b_got) < 19:
            b_got += [m.data for m in server.receive_many(timeout=5.0)]
        assert b_got == [b"b%d" % i for i in range(1, 20)]


def test_a_batch_handler_through_the_blocking_api() -> None:
    batches: list[int] = []
    payloads: list[bytes] = []

    def on_batch(batch: object) -> None:
        # the first batch holds the server's loop thread a moment: the client's next
        # messages pile up in the socket, so a later read takes several (each crosses to
        # the client's loop thread alone and may otherwise be read alone: 200 batches)
        if not batches:
            time.sleep(0.2)
        batches.append(len(batch.payloads))  # type: ignore[attr-defined]
        payloads.extend(batch.payloads)  # type: ignore[attr-defined]

    with NetworkTransport() as server, NetworkTransport() as client:
        listener = server.listen("127.0.0.1", 0, handler=on_batch, batch=True)
        conn = client.connect("127.0.0.1", listener.port)
        for i in range(200):
            client.send_nowait(conn, b"%d" % i)
        client.flush(conn, timeout=10.0)
        deadline = time.monotonic() + 10
        while len(payloads) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the loop thread's progress, bounded
        assert payloads == [b"%d" % i for i in range(200)]
        assert sum(batches) == 200 and len(batches) < 200  # more than one per call
