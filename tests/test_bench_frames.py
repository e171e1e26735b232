"""Every benchmark message is verified: the frame checks catch every kind of damage."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykernel.bench import VerifyError
from pykernel.bench._frames import WARM_SEQ, Framer, Verifier, body_pattern, make_tag

sizes = st.integers(min_value=16, max_value=600)


def frames(size: int, count: int, writer: int = 0) -> list[bytes]:
    f = Framer(size, writer)
    return [bytes(f.frame(i)) for i in range(count)]


def lengths(n: int, size: int = 64) -> bytearray:
    return bytearray(np.full(n, size, dtype=np.uint32).tobytes())


class TestFramer:
    def test_layout_tags_both_ends_and_pattern_between(self) -> None:
        """A frame is tag, body pattern, tag; the tag holds writer and sequence."""
        f = Framer(64, writer=3).frame(7)
        tag = make_tag(3, 7)
        assert struct.unpack_from("<Q", f, 0)[0] == tag
        assert struct.unpack_from("<Q", f, 56)[0] == tag
        assert bytes(f[8:56]) == body_pattern(64)

    def test_body_pattern_is_not_constant(self) -> None:
        """The body varies byte to byte, so a shifted copy does not compare equal."""
        body = body_pattern(64)
        assert len(set(body)) > 10

    def test_too_small_frame_is_refused(self) -> None:
        """Frames under 16 bytes cannot carry two tags."""
        with pytest.raises(VerifyError, match="frame size 8 is below the minimum of 16"):
            Framer(8)

    def test_writer_index_out_of_range_is_refused(self) -> None:
        """The writer id has 15 bits in the tag."""
        with pytest.raises(VerifyError, match="writer index 40000 is outside"):
            Framer(64, writer=40000)

    @given(
        size=st.sampled_from([16, 64, 4096]), seq=st.integers(0, 10**9), count=st.integers(1, 40)
    )
    def test_block_rows_equal_single_frames(self, size: int, seq: int, count: int) -> None:
        """The numpy batch builder yields exactly the frames the single builder does."""
        f = Framer(size, writer=2)
        block = f.block(seq, count)
        for i in range(count):
            assert bytes(block[i]) == bytes(Framer(size, 2).frame(seq + i))

    @settings(max_examples=60, deadline=None)
    @given(
        size=st.sampled_from([16, 64, 4096]),
        calls=st.lists(
            st.tuples(st.integers(0, 20_000), st.integers(1, 5000)), min_size=1, max_size=6
        ),
    )
    def test_blocks_are_right_across_tagging_windows(
        self, size: int, calls: list[tuple[int, int]]
    ) -> None:
        """Blocks inside, across, behind and larger than the tagged window hold the right tags."""
        f = Framer(size, writer=1)
        for seq, count in calls:
            block = f.block(seq, count).view("<u8")
            tags = np.arange(seq, seq + count, dtype=np.uint64) + np.uint64(make_tag(1, 0))
            assert (block[:, 0] == tags).all()
            assert (block[:, -1] == tags).all()
            assert bytes(block[count // 2][1:-1]) == body_pattern(size)
            rows = f.block_rows(seq, count)
            assert bytes(rows[-1]) == bytes(Framer(size, 1).frame(seq + count - 1))

    @given(size=sizes, writer=st.integers(0, 40), seq=st.integers(0, 2**40))
    def test_frame_bytes_equal_the_reused_frame(self, size: int, writer: int, seq: int) -> None:
        """The one-pack bytes builder yields exactly the frame the buffer builder does."""
        f = Framer(size, writer)
        assert f.frame_bytes(seq) == bytes(f.frame(seq))

    def test_block_rows_are_views_of_the_same_frames(self) -> None:
        """The reusable row views carry the frames of the latest block call."""
        f = Framer(64)
        f.block_rows(0, 8)
        rows = f.block_rows(100, 8)
        assert [bytes(r) for r in rows] == [bytes(Framer(64).frame(100 + i)) for i in range(8)]

    def test_block_needs_multiple_of_eight(self) -> None:
        """Batch frames are built as u64 words."""
        with pytest.raises(VerifyError, match="multiple of 8, not 20"):
            Framer(20).block(0, 4)


class TestVerifier:
    def test_accepts_an_intact_stream_and_counts_it(self) -> None:
        """Every message in order passes; the count is checked at the end."""
        v = Verifier(64, writers=1, count=50)
        assert all(v.check(m) for m in frames(64, 50))
        assert v.done
        v.finish()

    def test_missing_messages_fail_the_count(self) -> None:
        """Ending early is an error naming how many arrived."""
        v = Verifier(64, 1, 10)
        for m in frames(64, 9):
            v.check(m)
        with pytest.raises(VerifyError, match="writer 0: received 9 of 10 messages"):
            v.finish()

    def test_gap_is_reported(self) -> None:
        """A lost message shows as a gap at the next one."""
        v = Verifier(64, 1, 10)
        ms = frames(64, 10)
        v.check(ms[0])
        with pytest.raises(VerifyError, match="got message 2, expected 1: gap"):
            v.check(ms[2])

    def test_duplicate_is_reported(self) -> None:
        """A message seen twice is an error."""
        v = Verifier(64, 1, 10)
        ms = frames(64, 3)
        v.check(ms[0])
        v.check(ms[1])
        with pytest.raises(VerifyError, match="got message 1, expected 2: duplicate"):
            v.check(ms[1])

    def test_more_than_sent_is_reported(self) -> None:
        """A message beyond the announced count is an error."""
        v = Verifier(64, 1, 2)
        for m in frames(64, 2):
            v.check(m)
        with pytest.raises(VerifyError, match="message 2 beyond the 2 sent"):
            v.check(frames(64, 3)[2])

    def test_torn_frame_is_reported(self) -> None:
        """Head from one message and tail from another is a torn frame."""
        ms = frames(64, 2)
        torn = ms[0][:32] + ms[1][32:]
        with pytest.raises(VerifyError, match="writer 0 message 0: torn frame"):
            Verifier(64, 1, 2).check(torn)

    def test_wrong_length_is_reported(self) -> None:
        """A short or long message is named with both lengths."""
        m = frames(64, 1)[0]
        with pytest.raises(VerifyError, match="frame of 72 bytes, expected 64"):
            Verifier(64, 1, 1).check(m + b"12345678")
        with pytest.raises(VerifyError, match="frame of 8 bytes, expected 64"):
            Verifier(64, 1, 1).check(m[:8])

    def test_unknown_writer_is_reported(self) -> None:
        """A tag naming a writer the reader does not expect is an error."""
        with pytest.raises(VerifyError, match="unknown writer 5"):
            Verifier(64, 2, 1).check(frames(64, 1, writer=5)[0])

    def test_warm_up_frames_are_skipped_before_but_not_after(self) -> None:
        """Warm-up frames are discarded; one after real data means reordering."""
        v = Verifier(64, 1, 2)
        warm = bytes(Framer(64).warm())
        assert v.check(warm) is False and v.warm_seen == [True]
        v.check(frames(64, 1)[0])
        with pytest.raises(VerifyError, match="warm-up frame after message 0"):
            v.check(warm)

    def test_fan_in_keeps_order_per_writer(self) -> None:
        """Interleaved writers pass when each is in order; a per-writer gap fails."""
        v = Verifier(64, writers=2, count=3)
        a, b = frames(64, 3, 0), frames(64, 3, 1)
        for m in (a[0], b[0], b[1], a[1], a[2], b[2]):
            v.check(m)
        v.finish()
        v2 = Verifier(64, 2, 3)
        v2.check(a[0])
        with pytest.raises(VerifyError, match="writer 1: got message 1, expected 0"):
            v2.check(b[1])

    @settings(max_examples=200)
    @given(size=sizes, pos=st.integers(0, 10**6), flip=st.integers(1, 255), seq=st.integers(0, 30))
    def test_any_single_byte_damage_is_caught(
        self, size: int, pos: int, flip: int, seq: int
    ) -> None:
        """Flipping any bits of any byte of any frame is detected."""
        ms = frames(size, seq + 1)
        v = Verifier(size, 1, seq + 1)
        for m in ms[:seq]:
            v.check(m)
        bad = bytearray(ms[seq])
        bad[pos % size] ^= flip
        with pytest.raises(VerifyError):
            v.check(bad)

    @given(data=st.binary(min_size=0, max_size=300))
    def test_arbitrary_bytes_never_pass_as_a_message(self, data: bytes) -> None:
        """Random input is rejected with a VerifyError, never another exception."""
        v = Verifier(64, 1, 4)
        try:
            timed = v.check(data)
        except VerifyError:
            return
        # Only a genuine frame (or the warm-up frame) may be accepted.
        assert data in (frames(64, 1)[0], bytes(Framer(64).warm()))
        assert timed == (data != bytes(Framer(64).warm()))


class TestCheckMany:
    @given(size=st.sampled_from([16, 64, 4096]), n=st.integers(1, 50), split=st.integers(0, 50))
    def test_batch_path_accepts_what_single_path_accepts(
        self, size: int, n: int, split: int
    ) -> None:
        """Two batches of an intact stream pass and count every message."""
        ms = frames(size, n)
        v = Verifier(size, 1, n)
        k = min(split, n)
        assert v.check_many(ms[:k]) + v.check_many(ms[k:]) == n
        v.finish()

    @given(pos=st.integers(0, 64 * 20 - 1), flip=st.integers(1, 255))
    def test_batch_damage_is_caught_precisely(self, pos: int, flip: int) -> None:
        """Damage anywhere in a batch falls back to the exact single-message error."""
        ms = [bytearray(m) for m in frames(64, 20)]
        ms[pos // 64][pos % 64] ^= flip
        with pytest.raises(VerifyError, match=r"writer 0|unknown writer"):
            Verifier(64, 1, 20).check_many(ms)

    def test_leading_warm_up_frames_are_skipped(self) -> None:
        """A batch that starts with leftover warm-up frames still verifies."""
        warm = bytes(Framer(64).warm())
        v = Verifier(64, 1, 5)
        assert v.check_many([warm, warm, *frames(64, 5)]) == 5
        v.finish()

    def test_packed_block_passes_and_counts(self) -> None:
        """Frames laid end to end with their lengths verify as a block."""
        ms = frames(64, 10)
        v = Verifier(64, 1, 10)
        buf = bytearray(b"".join(ms)) + bytearray(64 * 6)  # room for more than arrived
        lens = bytearray(np.full(16, 64, dtype=np.uint32).tobytes())
        assert v.check_packed(buf, lens, 10) == 10
        v.finish()

    @given(pos=st.integers(0, 64 * 12 - 1), flip=st.integers(1, 255))
    def test_packed_damage_is_caught(self, pos: int, flip: int) -> None:
        """Any damaged byte of a packed block is found with the single-message error."""
        buf = bytearray(b"".join(frames(64, 12)))
        buf[pos] ^= flip
        with pytest.raises(VerifyError, match=r"writer 0|unknown writer"):
            Verifier(64, 1, 12).check_packed(buf, lengths(12), 12)

    def test_packed_wrong_length_is_reported(self) -> None:
        """A length other than the frame size is named like a single short message."""
        buf = bytearray(b"".join(frames(64, 2)))
        lens = bytearray(np.array([64, 32], dtype=np.uint32).tobytes())
        v = Verifier(64, 1, 2)
        with pytest.raises(VerifyError, match="frame of 32 bytes, expected 64"):
            v.check_packed(buf, lens, 2)

    def test_packed_leading_warm_up_is_skipped(self) -> None:
        """Leftover warm-up frames at the head of a block are skipped, the rest counted."""
        warm = bytes(Framer(64).warm())
        buf = bytearray(warm + b"".join(frames(64, 3)))
        v = Verifier(64, 1, 3)
        assert v.check_packed(buf, lengths(4), 4) == 3

    def test_empty_batch_counts_nothing(self) -> None:
        """An empty batch is not an error."""
        assert Verifier(64, 1, 1).check_many([]) == 0

    def test_seq_field_is_48_bits(self) -> None:
        """The warm-up marker is the all-ones 48-bit sequence."""
        assert WARM_SEQ == (1 << 48) - 1


def interleaved(writers: int, count: int, runs: list[int], size: int = 64) -> list[bytes]:
    """Frames of ``writers`` writers, ``count`` each, handed over in runs (as a combiner does)."""
    fs = [Framer(size, w) for w in range(writers)]
    nxt = [0] * writers
    out: list[bytes] = []
    i = 0
    while len(out) < writers * count:
        w = i % writers
        run = runs[i % len(runs)]
        i += 1
        for _ in range(min(run, count - nxt[w])):
            out.append(fs[w].frame_bytes(nxt[w]))
            nxt[w] += 1
    return out


def packed(ms: list[bytes]) -> tuple[bytearray, bytearray]:
    """``ms`` laid end to end, as ``recv_packed`` fills its buffer, with their lengths."""
    lens = np.array([len(m) for m in ms], dtype=np.uint32).tobytes()
    return bytearray(b"".join(ms)), bytearray(lens)


class TestManyWriters:
    """The fan-in block path (one memcmp + a walk over runs) is as strict as frame by frame."""

    @settings(max_examples=80, deadline=None)
    @given(
        writers=st.integers(2, 6),
        count=st.integers(1, 60),
        runs=st.lists(st.integers(1, 40), min_size=1, max_size=5),
        cut=st.integers(1, 97),
    )
    def test_intact_interleavings_pass_in_blocks(
        self, writers: int, count: int, runs: list[int], cut: int
    ) -> None:
        """Any interleaving that keeps each writer's order passes, cut into any blocks."""
        ms = interleaved(writers, count, runs)
        v, v2 = Verifier(64, writers, count), Verifier(64, writers, count)
        for i in range(0, len(ms), cut):
            buf, lens = packed(ms[i : i + cut])
            assert v.check_packed(buf, lens, len(ms[i : i + cut])) == len(ms[i : i + cut])
            assert v2.check_many(ms[i : i + cut]) == len(ms[i : i + cut])
        v.finish()
        v2.finish()
        # ... and they pass on the block path itself, not by falling back frame by frame.
        assert Verifier(64, writers, count)._check_block_multi(bytearray(b"".join(ms)))

    @settings(max_examples=150, deadline=None)
    @given(
        runs=st.lists(st.integers(1, 30), min_size=1, max_size=4),
        what=st.sampled_from(["swap", "drop", "duplicate", "flip", "foreign"]),
        at=st.integers(0, 10**6),
        flip=st.integers(1, 255),
    )
    def test_every_damage_to_a_block_is_caught(
        self, runs: list[int], what: str, at: int, flip: int
    ) -> None:
        """Reordering, loss, duplication, a flipped byte or a foreign writer never passes."""
        ms = interleaved(3, 20, runs)
        i = at % len(ms)
        if what == "swap":  # two frames of one writer change places (byte 6: the writer)
            same = [k for k in range(len(ms)) if ms[k][6] == ms[i][6] and k != i]
            j = same[at % len(same)]
            ms[i], ms[j] = ms[j], ms[i]
        elif what == "drop":
            del ms[i]
        elif what == "duplicate":
            ms.insert(i, ms[i])
        elif what == "flip":
            bad = bytearray(ms[i])
            bad[at % 64] ^= flip
            ms[i] = bytes(bad)
        else:
            ms[i] = Framer(64, 3).frame_bytes(0)
        with pytest.raises(VerifyError):
            v = Verifier(64, 3, 20)
            buf, lens = packed(ms)
            v.check_packed(buf, lens, len(ms))
            v.finish()
        with pytest.raises(VerifyError):
            v = Verifier(64, 3, 20)
            v.check_many(ms)
            v.finish()

    def test_a_run_may_not_carry_into_the_next_writer(self) -> None:
        """A warm-up tag + 1 is the next writer's first tag: no run may count across it."""
        warm = bytes(Framer(64, 0).warm())
        ms = [Framer(64, 0).frame_bytes(0), warm, Framer(64, 1).frame_bytes(0)]
        with pytest.raises(VerifyError, match="writer 0: warm-up frame after message 0"):
            buf, lens = packed(ms)
            Verifier(64, 2, 1).check_packed(buf, lens, 3)

    def test_a_failed_block_changes_nothing_before_the_bad_frame(self) -> None:
        """After the block path refuses, the precise path counts the good frames first."""
        ms = interleaved(2, 5, [2])
        ms[7] = ms[6]  # writer 1's fourth frame repeats its third
        v = Verifier(64, 2, 5)
        with pytest.raises(VerifyError, match="writer 1: got message 2, expected 3: duplicate"):
            v.check_many(ms)
        assert v.received == 7
