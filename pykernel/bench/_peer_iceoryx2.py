"""iceoryx2 (Python API) as a peer: zero-copy publish/subscribe over shared memory.

Its ``receive()`` never blocks, so the reader busy-polls (the row says so). Lossless like
the others: no safe overflow, publishers retry until delivered. Payloads are byte slices
(``Slice[c_uint8]``): the writer copies the frame into a loaned sample, the reader checks
the sample in place through ``as_memory_view()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable
from itertools import count
from typing import Any

from pykernel.bench._frames import Buffer
from pykernel.bench._transport import ALL_CASES, Channel, Link, Receiver, Sender, Transport

_SERIAL = count()
_SHM = "/dev/shm"


def _service(channel: Channel, root: str, prefix: str) -> tuple[Any, Any, Any]:
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    # A private root directory and shm prefix per link: nothing leaks into iceoryx2's
    # shared defaults, and the parent can remove every file the children made.
    config = iox2.config.default()
    config.global_cfg.root_path = iox2.Path.new(root + "/")
    config.global_cfg.prefix = iox2.FileName.new(prefix)
    node = (
        iox2.NodeBuilder.new()
        .config(config)
        .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
        .create(iox2.ServiceType.Ipc)
    )
    service = (
        node.service_builder(iox2.ServiceName.new(channel.name))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .max_publishers(max(channel.writers, 2))
        .max_subscribers(max(channel.readers, 2))
        .subscriber_max_buffer_size(channel.depth)
        .history_size(0)
        .enable_safe_overflow(False)
        .open_or_create()
    )
    return iox2, node, service


class _IoxSender(Sender):
    def __init__(self, channel: Channel, root: str, prefix: str) -> None:
        iox2, self._node, self._service = _service(channel, root, prefix)
        self._pub = (
            self._service.publisher_builder()
            .initial_max_slice_len(channel.size)
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )
        self._size = channel.size
        self._src: tuple[int, int] = (0, 0)  # (id of the frame buffer, its address)

    def send(self, frame: bytearray) -> None:
        if type(frame) is bytes:  # prebuilt frames (round trips): ctypes passes their address
            sample = self._pub.loan_slice_uninit(self._size)
            ctypes.memmove(sample.payload_ptr, frame, self._size)
            sample.assume_init().send()
            return
        if self._src[0] != id(frame):  # the framer reuses one buffer: look it up once
            self._keep = (ctypes.c_char * len(frame)).from_buffer(frame)
            self._src = (id(frame), ctypes.addressof(self._keep))
        sample = self._pub.loan_slice_uninit(self._size)
        ctypes.memmove(sample.payload_ptr, self._src[1], self._size)
        sample.assume_init().send()

    def close(self) -> None:
        self._keep = None
        self._pub.delete()


class _IoxReceiver(Receiver):
    def __init__(self, channel: Channel, root: str, prefix: str) -> None:
        _, self._node, self._service = _service(channel, root, prefix)
        self._sub = self._service.subscriber_builder().buffer_size(channel.depth).create()

    def recv(self) -> Buffer:
        return bytes(self._poll().payload().as_memory_view())

    def take(self, check: Callable[[Buffer], bool]) -> bool:
        sample = self._poll()
        try:
            return check(sample.payload().as_memory_view())
        finally:
            sample.delete()

    def _poll(self) -> Any:
        receive = self._sub.receive
        while (sample := receive()) is None:
            pass
        return sample

    def close(self) -> None:
        self._sub.delete()


class _IoxLink(Link):
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._root = tempfile.mkdtemp(prefix="pykernel-bench-iox2-")
        self._prefix = f"pkb{os.getpid()}x{next(_SERIAL)}_"

    def sender(self, index: int) -> Sender:
        return _IoxSender(self._channel, self._root, self._prefix)

    def receiver(self, index: int) -> Receiver:
        return _IoxReceiver(self._channel, self._root, self._prefix)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        for name in os.listdir(_SHM):
            if name.startswith(self._prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(_SHM, name))


class Iceoryx2(Transport):
    """iceoryx2 publish/subscribe, zero-copy in shared memory, busy-polling receive."""

    key = "iceoryx2"
    label = "iceoryx2"
    wait = "busy-poll"
    drops_until_joined = True  # a publisher delivers only to subscribers it has connected
    package = "iceoryx2"
    module = "iceoryx2"
    cases = ALL_CASES

    link = _IoxLink
