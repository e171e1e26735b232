/* pk_layout.h - the shared-memory layout of a pipe and the process-local handles.
 *
 * Segment: [pk_hdr][reader records][writer records][slot 0][slot 1]...[slot slots-1]
 *
 * Locking note (who writes what, so no lock is ever needed):
 *   hdr->head          single-writer shapes: the one writer (plain store-release);
 *                      combiner: every writer, by compare-and-swap (the claim).
 *   slot->seq/len      the writer that claimed the slot's position; a recovering peer
 *                      only after that writer was proven dead (CAS, so at most once).
 *   reader rec->tail   its reader; writers load it to know which slots are free.
 *   rec->pid           CAS 0 -> pid to attach; owner or reaper stores 0 to detach.
 *   counters           each owned by one side, relaxed, read by pk_pipe_stats.
 *   data_word          bumped by writers when readers sleep; space_word the reverse.
 *
 * Positions are 64-bit, free-running: slot index = pos & (slots - 1). Because slots is a
 * power of two the mask stays correct when pos wraps at 2^64 (2^64 is a multiple of it).
 * A slot holding position p has seq == p + 1 once published; seq == p + 1 - slots means
 * the slot is free for p (its previous lap was published). Lossless mode never lets seq
 * run ahead of a reader; lossy mode does, and readers detect it: seq moved before or
 * during their copy (a seqlock whose odd state is the marker value p).
 */
#ifndef PK_LAYOUT_H
#define PK_LAYOUT_H

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "pk_atomic.h"
#include "pykernel.h"

#define PK_MAGIC 0x4c454e52454b5950ULL /* "PYKERNEL" read as little-endian bytes */
#define PK_CACHE_LINE 64
#define PK_LEN_ABORTED 0xffffffffu /* slot len of a claim whose writer died */
#define PK_TICK_NS 20000000LL      /* liveness check period while sleeping (20 ms) */
#define PK_DEFAULT_SPIN_NS 50000u

typedef struct pk_hdr {
    /* line 0: identity and geometry, written by the creator before `ready`, then constant */
    uint64_t magic;
    uint32_t abi_version;
    uint32_t header_bytes; /* offset of slot 0 */
    uint64_t total_bytes;
    uint32_t slot_size;
    uint32_t slot_stride;
    uint32_t slots;
    uint32_t shape;
    uint32_t flags;
    uint32_t max_readers;
    uint32_t max_writers;
    int32_t creator_pid;
    uint64_t creator_start;
    /* line 1: more constants and rarely written flags */
    alignas(PK_CACHE_LINE) uint64_t start_pos;
    uint64_t created_ns;
    _Atomic uint64_t repair_owner; /* the repair lock (reaping dead peers, aborting dead
                                      claims): generation | holder's start time | pid, see
                                      pk_repair.c; stolen only if the holder is proven dead */
    _Atomic uint32_t ready;       /* creator stores 1 (release) after init; openers acquire */
    _Atomic uint32_t reader_seen; /* a reader attached once: a missing reader is now "gone" */
    _Atomic uint32_t writer_seen; /* a writer attached once: a missing writer is now "gone" */
    _Atomic uint32_t repair_pidns; /* the lock holder's pid namespace; 0 = not known yet */
    uint32_t creator_pidns;       /* pid namespace (inode) of the creator: pids are judged
                                     only from inside the namespace they belong to */
    /* line 2: the claim cursor */
    alignas(PK_CACHE_LINE) _Atomic uint64_t head;
    /* line 3: readers sleep here; writers bump it when the data_waiters flag is set */
    alignas(PK_CACHE_LINE) _Atomic uint32_t data_word;
    _Atomic uint32_t data_waiters;
    /* line 4: writers sleep here; readers bump it when the space_waiters flag is set */
    alignas(PK_CACHE_LINE) _Atomic uint32_t space_word;
    _Atomic uint32_t space_waiters;
} pk_hdr;

static_assert(offsetof(pk_hdr, start_pos) == 64, "constants fill line 0");
static_assert(offsetof(pk_hdr, head) == 128, "head on its own line");
/* tests/test_pipe_repair_lock.py forges lock holders at these offsets */
static_assert(offsetof(pk_hdr, repair_owner) == 80, "repair lock word at 80");
static_assert(offsetof(pk_hdr, repair_pidns) == 100, "repair lock namespace at 100");
static_assert(offsetof(pk_hdr, data_word) == 192, "data futex on its own line");
static_assert(offsetof(pk_hdr, space_word) == 256, "space futex on its own line");
static_assert(sizeof(pk_hdr) == 320, "header is five cache lines");

typedef struct pk_reader_rec {
    _Atomic int32_t pid;    /* 0 free, > 0 owner */
    _Atomic uint32_t pidns; /* owner's pid namespace (inode), set before start */
    _Atomic uint64_t start; /* owner's start time (clock ticks since boot), pid-reuse guard */
    _Atomic uint64_t tail;  /* next position to read; store-release by the reader pairs with
                               the writers' load-acquire before they reuse a slot */
    _Atomic uint64_t messages, bytes, drops, waits; /* owned by the reader */
    uint64_t pad1;
} pk_reader_rec;

typedef struct pk_writer_rec {
    _Atomic int32_t pid;
    _Atomic uint32_t claim_gen; /* combiner: seqlock over (claim_pos, claim_n), odd while the
                                   writer updates them */
    _Atomic uint64_t start;
    _Atomic uint64_t claim_pos; /* combiner: [claim_pos, claim_pos + claim_n) is (being)
                                   claimed by this writer; claim_n 0 = none */
    _Atomic uint32_t claim_n;
    _Atomic uint32_t pidns; /* owner's pid namespace (inode), set before start */
    _Atomic uint64_t messages, bytes, waits, full; /* owned by the writer */
} pk_writer_rec;

static_assert(sizeof(pk_reader_rec) == PK_CACHE_LINE, "one reader per cache line");
static_assert(sizeof(pk_writer_rec) == PK_CACHE_LINE, "one writer per cache line");

typedef struct pk_slot {
    _Atomic uint64_t seq; /* p + 1 once position p is published (store-release by the writer,
                             load-acquire by readers); p while a lossy writer overwrites the
                             slot for p (the seqlock marker: never equal to a reader's
                             expected value, since p and p + 1 differ modulo slots) */
    _Atomic uint32_t len; /* payload bytes, or PK_LEN_ABORTED */
    uint32_t pad;
    /* payload follows, 16-byte aligned */
} pk_slot;

static_assert(sizeof(pk_slot) == PK_SLOT_HEADER, "slot header size is public");

/* Process-local handle of a mapped pipe. */
struct pk_pipe {
    pk_hdr *hdr;
    pk_reader_rec *readers;
    pk_writer_rec *writers;
    unsigned char *ring;
    size_t map_bytes;
    uint64_t mask;      /* slots - 1, cached */
    uint32_t stride;    /* cached slot stride */
    uint32_t slots;
    uint32_t slot_size;
    uint32_t shape;
    uint32_t lossy;
    _Atomic int refs;   /* the handle itself plus each attached end: unmapped at zero, so an
                           end detached after pk_pipe_close never touches unmapped memory */
    /* Repair lock word first seen without its holder's namespace, and when (pk_repair.c):
     * process-local hints, relaxed (a stale one only delays a takeover by a grace). */
    _Atomic uint64_t rl_unknown_word;
    _Atomic int64_t rl_unknown_since;
};

struct pk_writer {
    pk_pipe *p;
    pk_writer_rec *rec;
    uint32_t index;
    uint32_t spin_ns;
    int32_t pid;
    uint64_t pos;        /* single-writer: next position to write (hdr->head mirror) */
    uint64_t tail_cache; /* a cache of the slowest reader's tail: only ever behind it */
    uint64_t reserved;   /* position held by pk_reserve, valid when has_reserved */
    int has_reserved;
    uint64_t late_wakeups; /* sleeps that timed out although room was there (see pk_wait) */
    int64_t tick_at;       /* next liveness check (monotonic ns) */
    uint32_t claim_gen;  /* combiner: mirror of rec->claim_gen (we are its only writer) */
    uint32_t prev_lap_ticks; /* lossy combiner: liveness ticks spent waiting for a lap */
    uint32_t need;           /* free slots has_space() asks for (hysteresis while spinning) */
    uint32_t polls;          /* has_space() calls, to refresh a partial tail cache now and then */
    int prev_lap_give_up;    /* ... and whether to stop waiting (see prev_lap_tick) */
};

struct pk_reader {
    pk_pipe *p;
    pk_reader_rec *rec;
    uint32_t index;
    uint32_t spin_ns;
    int32_t pid;        /* the attaching process (a forked copy must not detach) */
    uint64_t pos;       /* next position to read (rec->tail mirror) */
    int viewing;        /* pk_view handed out the slot at pos */
    uint64_t late_wakeups; /* sleeps that timed out although a message was there */
    int64_t tick_at;       /* next liveness check (monotonic ns) */
};

static inline pk_slot *pk_slot_at(const pk_pipe *p, uint64_t pos)
{
    /* pos & mask: see "Positions" above for why wrap-around at 2^64 is harmless. */
    return (pk_slot *)(p->ring + (size_t)(pos & p->mask) * p->stride);
}

static inline unsigned char *pk_payload(pk_slot *s) { return (unsigned char *)s + PK_SLOT_HEADER; }

/* pk_segment.c */
/* Whether a record's owner may still act: its pid is alive, or it lives in another pid
 * namespace, where this process cannot judge its pid (then it is assumed alive). */
int pk_peer_alive(uint32_t pidns, int32_t pid, uint64_t start);
void pk_pipe_ref(pk_pipe *p);
void pk_pipe_unref(pk_pipe *p);
uint64_t pk_self_start(void);
uint32_t pk_self_pidns(void);
int64_t pk_now_ns(void);

/* pk_wait.c: spin, then sleep on `word` until cond() != 0, timeout, or tick() < 0. */
typedef int (*pk_cond_fn)(void *ctx);
int pk_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, pk_cond_fn cond, pk_cond_fn tick,
            void *ctx, int64_t timeout_ns, uint32_t spin_ns, _Atomic uint64_t *wait_count,
            uint64_t *late, int64_t *tick_at);
void pk_wake(_Atomic uint32_t *word, _Atomic uint32_t *waiters);

/* pk_repair.c: dead peers and their leftovers, all under the repair lock. */
int pk_repair_lock(pk_pipe *p);
void pk_repair_unlock(pk_pipe *p);
int pk_reap_readers(pk_pipe *p);              /* detach dead readers; returns how many */
int pk_reap_writers(pk_pipe *p);              /* abort dead claims, detach dead writers */
int pk_repair_pos(pk_pipe *p, uint64_t pos);  /* 1 once the slot for pos is published */
int pk_any_live_writer(pk_pipe *p);
int pk_live_claim_below(pk_pipe *p, uint64_t pos, uint32_t self); /* live claim before pos */
void pk_set_claim(pk_writer *w, uint64_t pos, uint32_t n);

#endif /* PK_LAYOUT_H */
