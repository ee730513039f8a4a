"""The MLLP listener (HL7 v2.5.1 Appendix C "Lower Layer Protocols", MLLP release 2 framing).

A frame is ``<VT>`` (0x0B), the message, ``<FS><CR>`` (0x1C 0x0D). asyncio on a dedicated thread
serves any number of connections; the blocking apply step runs on ONE applier thread fed by a FIFO
queue, so messages are applied in arrival order and the loop keeps serving other connections
meanwhile. Group commit: the applier takes every frame queued while it was busy (at most
``max_batch`` of them) and applies them together, one transaction for the batch, one savepoint per
message; no frame waits for a batch to fill. Each connection is sequential: the ACK of a message is
written, after the batch's commit, before the next frame of that connection is handled.

Limits and bad input (each answered, never a crash; other connections are unaffected):

* bytes outside a frame (no ``<VT>``): one ``AR`` ACK, then the connection is closed (framing is
  lost, nothing after it can be trusted); ``<CR>``/``<LF>`` between frames are tolerated;
* a frame over ``max_message_bytes``: its bytes are discarded as they arrive (memory stays
  bounded) until its ``<FS><CR>``, then an ``AR`` ACK (MSA-2 from the frame's MSH when readable)
  and the connection goes on;
* ``idle_timeout``: a connection silent that long between messages is closed, and a frame must
  complete within that time from its first byte (a one-byte-per-second trickler is cut off);
* a partial frame followed by a disconnect is dropped: nothing was applied;
* optional TLS (``ssl.SSLContext``), with client certificates when a CA is configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import ssl
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger("pixelhub.hl7v2.mllp")

VT = 0x0B
END = b"\x1c\r"
_HEAD_BYTES = 4096
_READ_SIZE = 65536

BatchHandler = Callable[[Sequence[tuple[bytes, str | None]]], list[list[bytes]]]
Refuser = Callable[[bytes, str], list[bytes]]
# A frame waiting for the applier: its bytes, the peer address, where its ACKs go.
_Job = tuple[bytes, str | None, "asyncio.Future[list[bytes]]"]


class MllpServer:
    """Serves MLLP on ``host:port`` in a background thread."""

    def __init__(
        self,
        handle_batch: BatchHandler,
        refuse: Refuser,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        idle_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        max_batch: int = 32,
    ) -> None:
        self.handle_batch = handle_batch
        self.refuse = refuse
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.max_batch = max(1, max_batch)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._applier: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False
        self.bound_port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Bind, start the loop thread, return the bound port."""
        ready = concurrent.futures.Future[int]()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="hl7v2-mllp", daemon=True
        )
        self._thread.start()
        self.bound_port = ready.result(timeout=30)
        self._applier = threading.Thread(target=self._apply_loop, name="hl7v2-apply", daemon=True)
        self._applier.start()
        return self.bound_port

    def _apply_loop(self) -> None:
        """The applier: each round takes what is queued (up to ``max_batch``), applies it as one
        batch and hands each frame its ACKs; ``None`` in the queue stops it."""
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            outcome: list[list[bytes]] | Exception
            try:
                outcome = self.handle_batch([(frame, address) for frame, address, _ in jobs])
            except Exception as exc:  # handle_batch never raises; if it did, no ACK is sent
                log.exception("HL7 batch of %d failed", len(jobs))
                outcome = exc
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                    loop.call_soon_threadsafe(_resolve, [done for *_, done in jobs], outcome)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._connection,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.idle_timeout if self.ssl_context else None,
                    limit=_READ_SIZE,
                    backlog=512,
                )
            )
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(self._server.sockets[0].getsockname()[1])
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float) -> None:
        """Stop accepting, let messages being applied finish (up to ``timeout`` s), close."""
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop)
            try:
                fut.result(timeout + 5)
            except (TimeoutError, concurrent.futures.TimeoutError):
                log.warning("MLLP shutdown did not finish in %.1fs", timeout)
        if self._applier is not None:
            self._jobs.put(None)
            self._applier.join(timeout + 5)
            self._applier = None
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout + 5)
        self._loop = None

    async def _shutdown(self, timeout: float) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._busy and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ one connection

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        try:
            await self._serve(reader, writer, address, task)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("MLLP connection from %s ended: %s", address, exc)
        except Exception as exc:  # no ACK could be made: close, the sender will resend
            log.error("MLLP connection from %s closed: %s", address, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self._busy.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str | None,
        task: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        buf = bytearray()
        in_frame = False
        frame_started = 0.0
        oversize = False
        head = b""
        limit = self.max_message_bytes
        while not self._closing:
            timeout = self.idle_timeout
            if in_frame:
                timeout = max(0.0, frame_started + self.idle_timeout - loop.time())
            try:
                chunk = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
            except TimeoutError:
                log.info(
                    "MLLP connection from %s closed: %s",
                    address,
                    "frame not completed in time" if in_frame else "idle",
                )
                return
            if not chunk:
                if in_frame:
                    log.info("MLLP peer %s disconnected mid-frame; partial frame dropped", address)
                return
            buf += chunk
            while True:
                if not in_frame:
                    start = 0
                    while start < len(buf) and buf[start] in (0x0D, 0x0A):
                        start += 1
                    del buf[:start]
                    if not buf:
                        break
                    if buf[0] != VT:
                        text = (
                            "Data outside an MLLP frame: a message starts with <VT> (0x0B) and "
                            "ends with <FS><CR> (HL7 v2.5.1 Appendix C); closing the connection"
                        )
                        await self._send(writer, self.refuse(bytes(buf[:_HEAD_BYTES]), text))
                        return
                    del buf[0]
                    in_frame = True
                    frame_started = loop.time()
                end = buf.find(END)
                if end < 0:
                    if oversize or len(buf) > limit + 1:
                        if not oversize:
                            head = bytes(buf[:_HEAD_BYTES])
                            oversize = True
                        del buf[:-1]  # keep a trailing <FS> whose <CR> may come next
                    break
                frame = bytes(buf[:end])
                del buf[: end + 2]
                in_frame = False
                if oversize or len(frame) > limit:
                    text = f"The message exceeds the limit of {limit} bytes"
                    acks = self.refuse(head or frame[:_HEAD_BYTES], text)
                    oversize, head = False, b""
                else:
                    done: asyncio.Future[list[bytes]] = loop.create_future()
                    self._busy.add(task)
                    try:
                        self._jobs.put((frame, address, done))
                        acks = await done
                    finally:
                        self._busy.discard(task)
                await self._send(writer, acks)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, acks: list[bytes]) -> None:
        for ack in acks:
            writer.write(b"\x0b" + ack + END)
        await writer.drain()


def _resolve(
    waiting: list[asyncio.Future[list[bytes]]], outcome: list[list[bytes]] | Exception
) -> None:
    """On the loop: hand each frame of a batch its ACKs (unless its connection was cancelled)."""
    for k, done in enumerate(waiting):
        if done.done():
            continue
        if isinstance(outcome, Exception):
            done.set_exception(outcome)
        else:
            done.set_result(outcome[k])
