/* pykernel.h - the public C API of the pykernel pipe core.
 *
 * A pipe is one POSIX shared-memory object (/dev/shm/pykernel.<name>) holding a header,
 * cache-line separated cursors, reader and writer records and a power-of-two ring of
 * fixed-size slots. One layout carries three shapes:
 *
 *   PK_SHAPE_ONE          one writer, one reader
 *   PK_SHAPE_MULTIPLEXER  one writer, up to max_readers readers; each sees every message
 *   PK_SHAPE_COMBINER     up to max_writers writers, one reader; per-writer order kept
 *
 * Who may call what concurrently: a pk_writer and a pk_reader are process-local handles,
 * each used by one thread at a time. Any number of processes may hold handles on the same
 * pipe within the shape's limits. pk_pipe_stats may be called from anywhere at any time.
 *
 * Conventions: setup/teardown functions return 0 or -errno; hot-path functions return a
 * count (1 = done, 0 = would block / timed out) or -errno (-EPIPE: the peer is gone,
 * -EBADF: NULL handle, -EINTR: a signal interrupted the sleep, call again). Timeouts are
 * in nanoseconds: < 0 waits forever, 0 never waits.
 * Nothing here prints or aborts.
 *
 * Use from C: include this header and compile csrc/pk_*.c with -std=c11 (link nothing
 * else; -lrt on old glibc). build.py feeds the declarations between the cdef markers to
 * cffi, so they must stay plain declarations.
 */
#ifndef PYKERNEL_H
#define PYKERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef-begin */
enum {
    PK_ABI_VERSION = 2, /* 2: the repair lock word names its holder by pid and start time */
    PK_SHAPE_ONE = 0,
    PK_SHAPE_MULTIPLEXER = 1,
    PK_SHAPE_COMBINER = 2,
    PK_FLAG_LOSSY = 1,
    PK_MAX_PEERS = 1024,          /* max_readers / max_writers upper bound */
    PK_MAX_SLOT_SIZE = 1073741824, /* 1 GiB per message */
    PK_MAX_SLOTS = 1073741824,     /* 2^30 slots */
    PK_NAME_MAX = 200,            /* length of <name> in /pykernel.<name> */
    PK_SLOT_HEADER = 16,          /* bytes before each slot's payload */
    PK_OPEN_LAZY = 1,             /* pk_pipe_open_ex: do not prefault the ring (inspection) */
};

typedef struct pk_pipe pk_pipe;
typedef struct pk_writer pk_writer;
typedef struct pk_reader pk_reader;

/* The shape and size of a pipe, fixed at creation. */
typedef struct pk_geometry {
    uint32_t slot_size;   /* largest message in bytes (1 .. PK_MAX_SLOT_SIZE) */
    uint32_t slots;       /* ring length, a power of two (2 .. PK_MAX_SLOTS) */
    uint32_t shape;       /* PK_SHAPE_* */
    uint32_t flags;       /* PK_FLAG_* */
    uint32_t max_readers; /* 1 unless multiplexer */
    uint32_t max_writers; /* 1 unless combiner */
    uint64_t start_pos;   /* first sequence number (tests start near 2^64 to wrap) */
} pk_geometry;

/* Identity of a pipe as read from its header. */
typedef struct pk_pipe_info {
    pk_geometry geometry;
    uint64_t total_bytes;
    int32_t creator_pid;
    uint32_t abi_version;
    uint64_t created_ns;    /* CLOCK_REALTIME at creation */
    uint64_t creator_start; /* creator's start time, for pk_pid_alive */
} pk_pipe_info;

typedef struct pk_reader_stats {
    int32_t pid;      /* 0 = free record */
    int32_t alive;    /* 1 if pid is a live process (same start time) */
    uint64_t position; /* next sequence this reader reads */
    uint64_t messages;
    uint64_t bytes;
    uint64_t drops;   /* lossy: messages overwritten before this reader saw them */
    uint64_t waits;   /* times it had to sleep */
} pk_reader_stats;

typedef struct pk_writer_stats {
    int32_t pid;
    int32_t alive;
    uint64_t messages;
    uint64_t bytes;
    uint64_t waits;   /* times it had to sleep for space */
    uint64_t full;    /* non-blocking sends refused for lack of space */
} pk_writer_stats;

typedef struct pk_stats {
    uint64_t head;    /* next sequence to be claimed by a writer */
    uint64_t start_pos;
    uint64_t fill;    /* head minus the slowest live reader's position (capped at slots) */
    uint32_t readers; /* records filled into the reader array */
    uint32_t writers;
} pk_stats;

/* Segment lifetime. shm_name is "/pykernel.<name>". */
size_t pk_segment_size(const pk_geometry *g);
int pk_pipe_create(const char *shm_name, const pk_geometry *g, uint32_t mode, pk_pipe **out);
int pk_pipe_open(const char *shm_name, pk_pipe **out);
int pk_pipe_open_ex(const char *shm_name, uint32_t flags, pk_pipe **out);
int pk_pipe_info_get(const pk_pipe *p, pk_pipe_info *out);
/* Releases the handle; the mapping stays until every end attached through it detached. */
void pk_pipe_close(pk_pipe *p);
int pk_pipe_unlink(const char *shm_name);
int pk_pipe_stats(const pk_pipe *p, pk_stats *out, pk_reader_stats *readers, uint32_t nreaders,
                  pk_writer_stats *writers, uint32_t nwriters);

/* Liveness of a process: 1 alive, 0 gone (or a zombie, or pid reused). start_ticks 0
 * skips the start-time check. pk_pid_start_ticks returns 0 when pid does not exist. */
int pk_pid_alive(int32_t pid, uint64_t start_ticks);
uint64_t pk_pid_start_ticks(int32_t pid);
/* Whether the creator still runs (1 also when it lives in another pid namespace, whose
 * pids this process cannot judge). Peers' "alive" in pk_pipe_stats follows the same rule. */
int pk_pipe_creator_alive(const pk_pipe *p);

/* Writers. */
int pk_writer_attach(pk_pipe *p, pk_writer **out);
void pk_writer_detach(pk_writer *w);
void pk_writer_set_spin(pk_writer *w, uint32_t spin_ns);
uint32_t pk_writer_index(const pk_writer *w);
/* Sleeps that ran out their time although room was there: lost wake-ups (should be 0). */
uint64_t pk_writer_late_wakeups(const pk_writer *w);
int pk_send(pk_writer *w, const char *data, uint32_t len, int64_t timeout_ns);
int pk_send_batch(pk_writer *w, const char *data, const uint32_t *lens, uint32_t n,
                  int64_t timeout_ns);
int pk_send_strided(pk_writer *w, const char *data, uint32_t stride, uint32_t len, uint32_t n,
                    int64_t timeout_ns);
/* pk_send when it can finish at once, and -EAGAIN (nothing done, nothing counted) when it
 * would wait, the pipe is a lossy combiner, or it would fail: then call pk_send, which
 * waits, counts and reports. Never sleeps, so a caller may hold a lock (Python's GIL). */
int pk_send_try(pk_writer *w, const char *data, uint32_t len);
int pk_reserve(pk_writer *w, void **data, int64_t timeout_ns);
/* pk_reserve when a slot is free now; -EAGAIN (nothing done or counted) otherwise. */
int pk_reserve_try(pk_writer *w, void **data);
int pk_commit(pk_writer *w, uint32_t len);
int pk_abort(pk_writer *w);

/* Readers. */
int pk_reader_attach(pk_pipe *p, pk_reader **out);
void pk_reader_detach(pk_reader *r);
void pk_reader_set_spin(pk_reader *r, uint32_t spin_ns);
uint32_t pk_reader_index(const pk_reader *r);
uint64_t pk_reader_late_wakeups(const pk_reader *r);
uint64_t pk_reader_drops(const pk_reader *r);
int pk_recv(pk_reader *r, char *buf, uint32_t cap, uint32_t *len, int64_t timeout_ns);
/* pk_recv returning the message's length (>= 0) itself: -ETIMEDOUT when nothing arrived in
 * time (or the pipe is empty, timeout 0), else -errno as pk_recv. One argument and one
 * out-parameter read fewer per message for a caller such as Python. */
int64_t pk_recv_len(pk_reader *r, char *buf, uint32_t cap, int64_t timeout_ns);
/* pk_recv_len for a message that is there now; -EAGAIN when it is not (no liveness check,
 * nothing counted): then call pk_recv_len, which waits and notices a writer that is gone. */
int64_t pk_recv_try(pk_reader *r, char *buf, uint32_t cap);
int pk_recv_batch(pk_reader *r, char *buf, uint64_t cap, uint32_t *lens, uint32_t max_n,
                  int64_t timeout_ns);
int pk_view(pk_reader *r, const void **data, uint32_t *len, int64_t timeout_ns);
/* pk_view when a message is there now; -EAGAIN (nothing done or counted) otherwise. */
int pk_view_try(pk_reader *r, const void **data, uint32_t *len);
int pk_release(pk_reader *r);
/* Close a view without consuming its message (1; -EINVAL when no view is open). */
int pk_view_cancel(pk_reader *r);
/* cdef-end */

#ifdef __cplusplus
}
#endif
#endif /* PYKERNEL_H */
