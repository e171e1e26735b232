"""Messages that prove themselves: every frame carries its writer and sequence number.

Layout of a frame of ``size`` bytes (``size`` >= 16)::

    [tag: u64 LE][body: fixed pattern, size-16 bytes][tag: u64 LE]
    tag = writer << 48 | sequence

The tag at both ends catches a torn or stale slot (head from one message, tail from
another); the body pattern catches corruption; the per-writer sequence catches loss,
duplication and reordering; the count is checked when the stream ends. The receive side
checks one message with a single ``memcmp`` (``bytearray == buffer``), so verification
costs every transport the same.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from pykernel.bench._errors import VerifyError

MIN_SIZE = 16
WRITER_SHIFT = 48
SEQ_MASK = (1 << WRITER_SHIFT) - 1
WARM_SEQ = SEQ_MASK  # a warm-up frame: sent before the timed stream, never counted
MAX_WRITERS = 1 << 15
SMALL = 4096  # frames up to this size are checked by unpacking, larger ones by memcmp
BATCH_FAST_MAX = 512  # batches of frames up to this size are checked with numpy
WINDOW_FRAMES = 4096  # Framer.block tags this many frames at a time ...
WINDOW_BYTES = 1 << 20  # ... but no more than this many bytes of them

_U64 = struct.Struct("<Q")

Buffer = Any  # bytes, bytearray or memoryview: anything with the buffer protocol


def body_pattern(size: int) -> bytes:
    """Return the fixed body of a frame of ``size`` bytes (not constant, so shifts show)."""
    if size < MIN_SIZE:
        raise VerifyError(f"frame size {size} is below the minimum of {MIN_SIZE} bytes")
    return ((np.arange(size - MIN_SIZE, dtype=np.uint32) * 7 + 13) % 251).astype(np.uint8).tobytes()


def _u64_view(buf: bytearray) -> memoryview | None:
    """Return a native u64 view of ``buf`` when native u64 is little-endian, else None."""
    if sys.byteorder != "little" or len(buf) % 8:
        return None
    return memoryview(buf).cast("Q")


def make_tag(writer: int, seq: int) -> int:
    """Return the tag of message ``seq`` of ``writer``."""
    return (writer << WRITER_SHIFT) | seq


class Framer:
    """Builds the frames of one writer into one reused buffer.

    Args:
        size: frame length in bytes.
        writer: this writer's index (0 for a single writer).

    """

    def __init__(self, size: int, writer: int = 0) -> None:
        if not 0 <= writer < MAX_WRITERS:
            raise VerifyError(f"writer index {writer} is outside 0..{MAX_WRITERS - 1}")
        self.size = size
        self.writer = writer
        self.buf = bytearray(_U64.size) + bytearray(body_pattern(size)) + bytearray(8)
        self._block: np.ndarray | None = None
        self._rows: list[memoryview] = []
        self._bwords: np.ndarray | None = None
        self._wseq, self._wlen = 0, 0  # the tagged window of block(): first seq, frames
        self._base = writer << WRITER_SHIFT
        # Writing the two tags through a u64 view costs half of two pack_into calls.
        self._words = _u64_view(self.buf)
        self._body = body_pattern(size)
        self._pack = struct.Struct(f"<Q{size - 16}sQ").pack

    def frame_bytes(self, seq: int) -> bytes:
        """Return message ``seq`` as a new bytes object, built in one pack.

        For senders that need an immutable copy anyway: ~110 ns against ~460 ns for
        ``bytes(frame(seq))`` at 64 B here.
        """
        tag = self._base | seq
        return self._pack(tag, self._body, tag)

    def frame(self, seq: int) -> bytearray:
        """Write message ``seq`` into the shared buffer and return it (valid until reuse)."""
        tag = self._base | seq
        words = self._words
        if words is not None:
            words[0] = tag
            words[-1] = tag
        else:
            _U64.pack_into(self.buf, 0, tag)
            _U64.pack_into(self.buf, self.size - 8, tag)
        return self.buf

    def warm(self) -> bytearray:
        """Return this writer's warm-up frame (discarded by readers)."""
        return self.frame(WARM_SEQ)

    def block(self, seq: int, count: int) -> np.ndarray:
        """Return messages ``seq .. seq+count-1`` as a ``(count, size)`` uint8 array view.

        The view stays valid until a call asks for messages outside the current window;
        the size must be a multiple of 8. Frames are tagged a window (up to
        ``WINDOW_FRAMES``, at most ``WINDOW_BYTES``) at a time, so a call inside the window
        is one slice: the per-call numpy work (~5 us) is paid once per window.
        """
        if self.size % 8:
            raise VerifyError(f"block frames need a size that is a multiple of 8, not {self.size}")
        off = seq - self._wseq
        if off < 0 or off + count > self._wlen or self._block is None:
            self._retag(seq, count)
            off = 0
        return self._block[off : off + count]  # type: ignore[index]

    def _retag(self, seq: int, count: int) -> None:
        """Tag a new window of frames starting at ``seq`` (at least ``count`` of them)."""
        n = max(count, min(WINDOW_FRAMES, WINDOW_BYTES // self.size))
        if self._block is None or self._block.shape[0] < n:
            row = np.frombuffer(bytes(self.buf), dtype=np.uint8)
            self._block = np.tile(row, (n, 1))
            self._rows = []  # made by block_rows when first needed
            self._bwords = self._block.view("<u8")
            self._steps = np.arange(n, dtype=np.uint64)
        words = self._bwords[:n]
        tags = self._steps[:n] + np.uint64(self._base | seq)  # tags never carry over
        words[:, 0] = tags
        words[:, -1] = tags
        self._wseq, self._wlen = seq, n

    def block_rows(self, seq: int, count: int) -> list[memoryview]:
        """Like :meth:`block`, as one memoryview per message (made once per window)."""
        self.block(seq, count)
        if not self._rows:
            self._rows = [memoryview(r) for r in self._block]  # type: ignore[union-attr]
        off = seq - self._wseq
        return self._rows[off : off + count]


class Verifier:
    """Checks every frame a reader receives, per writer, and counts them.

    Args:
        size: expected frame length.
        writers: how many writers feed this reader.
        count: how many timed messages each writer sends.

    """

    def __init__(self, size: int, writers: int, count: int) -> None:
        self.size = size
        self.writers = writers
        self.count = count
        body = body_pattern(size)
        self.expected = bytearray(8) + bytearray(body) + bytearray(8)
        self.next = [0] * writers
        self.warm_seen = [False] * writers
        self.received = 0
        self.total = writers * count
        # Small frames: one unpack gives head, body and tail (the body copy is cheap).
        # Large frames: one memcmp against ``expected`` with the tags written in.
        self._small = size <= SMALL
        self._unpack = struct.Struct(f"<Q{size - 16}sQ").unpack_from if self._small else None
        self._body_bytes = body
        self._words = _u64_view(self.expected)
        self._one = writers == 1 and self._words is not None  # check's one-memcmp path
        self._framer: Framer | None = None  # builds expected batches (made on first use)
        self._size_words = b""
        self._multi: np.ndarray | None = None  # see _expected_multi (made on first use)

    @property
    def done(self) -> bool:
        """True once every writer's ``count`` messages arrived."""
        return self.received >= self.total

    def check(self, buf: Buffer) -> bool:
        """Verify one frame; return True for a timed message, False for a warm-up one.

        Raises:
            VerifyError: wrong length, unknown writer, sequence gap/duplicate, torn frame,
                corrupted body, or more messages than were sent.

        """
        if self._one:
            # One writer (tag == sequence): write the tags the next frame must carry into
            # ``expected`` and compare with one memcmp (a wrong length is unequal too); any
            # mismatch, a warm-up frame or too many frames take the precise path below.
            nxt = self.next
            want = nxt[0]
            if want < self.count:
                words = self._words
                words[0] = want
                words[-1] = want
                if self.expected == buf:
                    nxt[0] = want + 1
                    self.received += 1
                    return True
        return self._check_precise(buf)

    def count_exact(self, seq: int) -> None:
        """Count message ``seq`` of the one writer as verified.

        For a caller that compared it whole with the frame :class:`Framer` builds for that
        sequence (the same bytes :meth:`check` accepts); a mismatch goes to :meth:`check`.

        Raises:
            VerifyError: ``seq`` is not the next message expected (or there are several
                writers, or all messages arrived already).

        """
        nxt = self.next
        if self.writers != 1 or seq != nxt[0] or seq >= self.count:
            raise VerifyError(f"count_exact: message {seq} of one writer is not expected next")
        nxt[0] = seq + 1
        self.received += 1

    def _check_precise(self, buf: Buffer) -> bool:
        """:meth:`check` field by field: exact errors, warm-up frames and many writers."""
        if len(buf) != self.size:
            raise VerifyError(f"frame of {len(buf)} bytes, expected {self.size}")
        if self._unpack is not None:
            head, body, tail = self._unpack(buf)
        else:
            (head,) = _U64.unpack_from(buf, 0)
        writer = head >> WRITER_SHIFT
        if writer >= self.writers:
            raise VerifyError(f"frame from unknown writer {writer} (tag {head:#x})")
        want = self.next[writer]
        if head & SEQ_MASK != want:
            return self._out_of_order(writer, head & SEQ_MASK, want)
        if want >= self.count:
            raise VerifyError(f"writer {writer}: message {want} beyond the {self.count} sent")
        if self._unpack is not None:
            if tail != head or body != self._body_bytes:
                self._diagnose(buf, writer, want)
        else:
            exp = self.expected
            if self._words is not None:
                self._words[0] = head
                self._words[-1] = head
            else:
                _U64.pack_into(exp, 0, head)
                _U64.pack_into(exp, self.size - 8, head)
            if exp != buf:
                self._diagnose(buf, writer, want)
        self.next[writer] = want + 1
        self.received += 1
        return True

    def _out_of_order(self, writer: int, seq: int, want: int) -> bool:
        if seq == WARM_SEQ:
            if want:
                raise VerifyError(f"writer {writer}: warm-up frame after message {want - 1}")
            self.warm_seen[writer] = True
            return False
        what = "duplicate/old" if seq < want else "gap (lost messages)"
        raise VerifyError(f"writer {writer}: got message {seq}, expected {want}: {what}")

    def check_many(self, msgs: Sequence[Buffer]) -> int:
        """Verify a batch of frames at once; return how many were timed.

        Falls back to :meth:`check` one by one for warm-up frames, odd or large sizes or
        any mismatch, so errors are exactly as precise as for single messages.
        """
        k = len(msgs)
        if k == 0:
            return 0
        size = self.size
        # A batch memcmp pays off for small frames; big ones are cheaper one at a time.
        if size % 8 == 0 and size <= BATCH_FAST_MAX and set(map(len, msgs)) == {size}:
            joined = b"".join(msgs)
            if self.writers > 1:
                if self._check_block_multi(bytearray(joined)):
                    return k
            # One writer: the whole batch against the expected block, one memcmp.
            elif self.next[0] + k <= self.count and joined == self._expected_block(self.next[0], k):
                self.next[0] += k
                self.received += k
                return k
        timed = 0
        for m in msgs:
            timed += self.check(m)
        return timed

    def check_packed(self, buf: bytearray, lengths: bytearray, count: int) -> int:
        """Verify ``count`` messages laid end to end in ``buf``.

        ``lengths`` holds their sizes as native uint32 (a bytearray, as ``recv_packed``
        fills it). Returns how many were timed. Same checks and errors as :meth:`check`.
        """
        size = self.size
        if (
            self.writers == 1
            and size <= BATCH_FAST_MAX
            and self.next[0] + count <= self.count
            and lengths[: 4 * count] == self._sizes(count)
        ):
            nbytes = count * size
            block = buf if nbytes == len(buf) else buf[:nbytes]
            # bytearray == ndarray compares the two buffers with one memcmp.
            if block == self._expected_rows(self.next[0], count):
                self.next[0] += count
                self.received += count
                return count
        elif (
            self.writers > 1
            and size % 8 == 0
            and size <= BATCH_FAST_MAX
            and lengths[: 4 * count] == self._sizes(count)
        ):
            nbytes = count * size
            if self._check_block_multi(buf if nbytes == len(buf) else buf[:nbytes]):
                return count
        view = memoryview(buf)
        timed, off = 0, 0
        for n in memoryview(lengths).cast("I")[:count].tolist():
            timed += self.check(view[off : off + n])
            off += n
        return timed

    def _check_block_multi(self, data: bytearray) -> bool:
        """Verify frames laid end to end in ``data`` (a whole number of them) from many writers.

        One memcmp checks every body and tail, then a walk over runs checks the sequences.

        Accepts the block (and counts it) only when every frame is intact and each writer's
        frames continue its sequence in order; otherwise returns False and changes nothing,
        so the caller's frame-by-frame path finds the first bad frame and names it.
        """
        n = len(data) // self.size
        if n == 0:
            return True
        heads = np.frombuffer(data, "<u8").reshape(n, -1)[:, 0]
        # Body and tail of every frame at once: the expected block with each frame's own
        # head tag written at both ends, compared with one memcmp.
        expected = self._expected_multi(n)
        words = expected.view("<u8")
        words[:, 0] = heads
        words[:, -1] = heads
        if data != expected:  # bytearray == ndarray: one memcmp of the two buffers
            return False
        # A combiner hands over runs: a writer's claim of several slots in a row. Inside a
        # run each tag is the previous + 1 (same writer, next sequence), so only the first
        # frame of each run needs checking against its writer's next sequence.
        ends = np.flatnonzero(np.diff(heads) != np.uint64(1)).tolist()
        firsts = heads[[0, *(e + 1 for e in ends)]].tolist()
        bounds = [0, *(e + 1 for e in ends), n]
        nxt = list(self.next)
        writers, count = self.writers, self.count
        for i, head in enumerate(firsts):
            w = head >> WRITER_SHIFT
            if w >= writers or head & SEQ_MASK != nxt[w]:
                return False
            nxt[w] += bounds[i + 1] - bounds[i]
            if nxt[w] > count:  # also keeps a run from running into the next writer's tags
                return False
        self.next = nxt
        self.received += n
        return True

    def _expected_multi(self, n: int) -> np.ndarray:
        """Return a reusable ``(n, size)`` block of frames whose tags the caller overwrites."""
        if self._multi is None or self._multi.shape[0] < n:
            self._multi = np.tile(np.frombuffer(bytes(self.expected), np.uint8), (n, 1))
        return self._multi[:n]

    def _sizes(self, count: int) -> bytes:
        """``count`` native uint32 copies of the frame size (what intact lengths read)."""
        if len(self._size_words) < 4 * count:
            self._size_words = np.full(count, self.size, dtype=np.uint32).tobytes()
        return self._size_words[: 4 * count]

    def _expected_rows(self, seq: int, count: int) -> np.ndarray:
        if self._framer is None:
            self._framer = Framer(self.size, 0)
        return self._framer.block(seq, count)

    def _expected_block(self, seq: int, count: int) -> bytes:
        """Frames ``seq .. seq+count-1`` of writer 0, as one bytes object."""
        return self._expected_rows(seq, count).tobytes()

    def finish(self) -> None:
        """Raise unless exactly the expected number of messages arrived from each writer."""
        for writer, got in enumerate(self.next):
            if got != self.count:
                raise VerifyError(f"writer {writer}: received {got} of {self.count} messages")

    def _diagnose(self, buf: Buffer, writer: int, seq: int) -> None:
        data = bytes(buf)
        (tail,) = _U64.unpack_from(data, self.size - 8)
        if tail != make_tag(writer, seq):
            raise VerifyError(f"writer {writer} message {seq}: torn frame, tail tag {tail:#x}")
        expected = make_tag(writer, seq).to_bytes(8, "little") + self._body_bytes
        first = next(i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b)
        raise VerifyError(f"writer {writer} message {seq}: body differs at byte {first}")
