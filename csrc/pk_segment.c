/* pk_segment.c - create, open, validate and unmap pipe segments; process liveness; stats. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pk_layout.h"

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static int geometry_ok(const pk_geometry *g)
{
    if (g->slot_size == 0 || g->slot_size > PK_MAX_SLOT_SIZE)
        return 0;
    if (g->slots < 2 || g->slots > PK_MAX_SLOTS || (g->slots & (g->slots - 1)) != 0)
        return 0;
    if (g->shape > PK_SHAPE_COMBINER || (g->flags & ~(uint32_t)PK_FLAG_LOSSY) != 0)
        return 0;
    if (g->max_readers == 0 || g->max_readers > PK_MAX_PEERS || g->max_writers == 0 ||
        g->max_writers > PK_MAX_PEERS)
        return 0;
    if (g->shape != PK_SHAPE_MULTIPLEXER && g->max_readers != 1)
        return 0;
    if (g->shape != PK_SHAPE_COMBINER && g->max_writers != 1)
        return 0;
    return 1;
}

static uint64_t stride_of(uint32_t slot_size)
{
    return round_up((uint64_t)PK_SLOT_HEADER + slot_size, 16);
}

static uint64_t header_bytes_of(const pk_geometry *g)
{
    uint64_t recs = (uint64_t)(g->max_readers + g->max_writers) * PK_CACHE_LINE;
    return round_up(sizeof(pk_hdr) + recs, 4096);
}

size_t pk_segment_size(const pk_geometry *g)
{
    if (!g || !geometry_ok(g))
        return 0;
    uint64_t total = header_bytes_of(g) + stride_of(g->slot_size) * g->slots;
    total = round_up(total, 4096);
    if (total > (uint64_t)SIZE_MAX / 2)
        return 0;
    return (size_t)total;
}

/* ---- process liveness ---------------------------------------------------------------- */

/* Reads /proc/PID/stat: fills state and start time (field 22, clock ticks since boot). */
static int read_stat(int32_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = 0;
    char *s = strrchr(buf, ')'); /* the command name may contain spaces and ')' */
    if (!s || s[1] != ' ')
        return -EIO;
    s += 2;
    *state = *s;
    /* s points at field 3; advance to field 22. */
    for (int field = 3; field < 22; field++) {
        s = strchr(s, ' ');
        if (!s)
            return -EIO;
        s++;
    }
    *start = strtoull(s, NULL, 10);
    return 0;
}

uint64_t pk_pid_start_ticks(int32_t pid)
{
    char state;
    uint64_t start;
    if (pid <= 0 || read_stat(pid, &state, &start) != 0)
        return 0;
    return start;
}

int pk_pid_alive(int32_t pid, uint64_t start_ticks)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t start;
    int rc = read_stat(pid, &state, &start);
    if (rc != 0)
        return rc == -EACCES ? 1 : 0;
    if (state == 'Z' || state == 'X') /* killed but not yet reaped: it will never act again */
        return 0;
    if (start_ticks != 0 && start != start_ticks) /* the pid was reused by another process */
        return 0;
    return 1;
}

static uint64_t self_start_cache;
static uint32_t self_pidns_cache;

static void self_refresh(void)
{
    /* Cached per process; a forked child has another pid and must not use the parent's. */
    static int32_t cached_pid;
    int32_t me = (int32_t)getpid();
    if (cached_pid != me) {
        struct stat st;
        self_start_cache = pk_pid_start_ticks(me);
        self_pidns_cache = stat("/proc/self/ns/pid", &st) == 0 ? (uint32_t)st.st_ino : 0;
        cached_pid = me;
    }
}

uint64_t pk_self_start(void)
{
    self_refresh();
    return self_start_cache;
}

uint32_t pk_self_pidns(void)
{
    self_refresh();
    return self_pidns_cache;
}

int pk_peer_alive(uint32_t pidns, int32_t pid, uint64_t start)
{
    if (pid <= 0)
        return 0;
    if (pidns != pk_self_pidns()) /* e.g. a process under `unshare --pid`: not ours to judge */
        return 1;
    return pk_pid_alive(pid, start);
}

int pk_pipe_creator_alive(const pk_pipe *p)
{
    if (!p)
        return 0;
    return pk_peer_alive(p->hdr->creator_pidns, p->hdr->creator_pid, p->hdr->creator_start);
}

/* ---- mapping ------------------------------------------------------------------------- */

static void fill_handle(pk_pipe *p, pk_hdr *h, size_t bytes)
{
    atomic_init(&p->refs, 1);
    p->hdr = h;
    p->map_bytes = bytes;
    p->readers = (pk_reader_rec *)((unsigned char *)h + sizeof(pk_hdr));
    p->writers = (pk_writer_rec *)(p->readers + h->max_readers);
    p->ring = (unsigned char *)h + h->header_bytes;
    p->slots = h->slots;
    p->mask = (uint64_t)h->slots - 1;
    p->stride = h->slot_stride;
    p->slot_size = h->slot_size;
    p->shape = h->shape;
    p->lossy = (h->flags & PK_FLAG_LOSSY) != 0;
}

int pk_pipe_create(const char *shm_name, const pk_geometry *g, uint32_t mode, pk_pipe **out)
{
    if (!shm_name || !g || !out)
        return -EINVAL;
    size_t bytes = pk_segment_size(g);
    if (bytes == 0)
        return -EINVAL;
    pk_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
    if (fd < 0) {
        int e = errno;
        free(p);
        return -e;
    }
    int rc = 0;
    if (fchmod(fd, mode & 0777) != 0) /* the umask must not widen or narrow what was asked */
        rc = -errno;
    /* Reserve every page now: a full /dev/shm fails here with ENOSPC instead of a SIGBUS
     * on some later page touch. */
    if (rc == 0) {
        int e = posix_fallocate(fd, 0, (off_t)bytes);
        if (e != 0)
            rc = -e;
    }
    void *m = MAP_FAILED;
    if (rc == 0) {
        /* MAP_POPULATE: page-table entries now, not a fault per page on the hot path. */
        m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED)
            rc = -errno;
    }
    close(fd);
    if (rc != 0) {
        shm_unlink(shm_name);
        free(p);
        return rc;
    }
    pk_hdr *h = m; /* fresh pages are zero */
    h->magic = PK_MAGIC;
    h->abi_version = PK_ABI_VERSION;
    h->header_bytes = (uint32_t)header_bytes_of(g);
    h->total_bytes = bytes;
    h->slot_size = g->slot_size;
    h->slot_stride = (uint32_t)stride_of(g->slot_size);
    h->slots = g->slots;
    h->shape = g->shape;
    h->flags = g->flags;
    h->max_readers = g->max_readers;
    h->max_writers = g->max_writers;
    h->creator_pid = (int32_t)getpid();
    h->creator_start = pk_self_start();
    h->creator_pidns = pk_self_pidns();
    h->start_pos = g->start_pos;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->created_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    /* Relaxed initialisation: published to openers by the `ready` release below. */
    pk_st_rlx(&h->head, g->start_pos);
    fill_handle(p, h, bytes);
    for (uint32_t i = 0; i < h->max_readers; i++)
        pk_st_rlx(&p->readers[i].tail, g->start_pos);
    /* Every slot starts "free for its first position": seq = p + 1 - slots. */
    for (uint64_t k = 0; k < g->slots; k++) {
        uint64_t pos = g->start_pos + k;
        pk_st_rlx(&pk_slot_at(p, pos)->seq, pos + 1 - g->slots);
    }
    /* Pairs with pk_pipe_open's load-acquire: all of the above is visible to an opener. */
    pk_st_rel(&h->ready, 1);
    *out = p;
    return 0;
}

int pk_pipe_open(const char *shm_name, pk_pipe **out)
{
    return pk_pipe_open_ex(shm_name, 0, out);
}

int pk_pipe_open_ex(const char *shm_name, uint32_t flags, pk_pipe **out)
{
    if (!shm_name || !out)
        return -EINVAL;
    int fd = shm_open(shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if ((size_t)st.st_size < sizeof(pk_hdr)) {
        close(fd);
        return st.st_size == 0 ? -EAGAIN : -EBADMSG; /* 0: a creator between open and fallocate */
    }
    size_t bytes = (size_t)st.st_size;
    int populate = flags & PK_OPEN_LAZY ? 0 : MAP_POPULATE;
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | populate, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -errno;
    pk_hdr *h = m;
    int rc = 0;
    uint64_t magic = atomic_load_explicit((_Atomic uint64_t *)&h->magic, memory_order_relaxed);
    if (magic != PK_MAGIC && magic != 0)
        rc = -EBADMSG;
    else if (pk_ld_acq(&h->ready) != 1) /* pairs with the creator's store-release */
        rc = -EAGAIN;                   /* a creator is still filling in the header */
    else if (h->abi_version != PK_ABI_VERSION)
        rc = -EPROTO;
    else {
        pk_geometry g = {h->slot_size, h->slots, h->shape, h->flags, h->max_readers,
                         h->max_writers, h->start_pos};
        if (pk_segment_size(&g) != bytes || h->total_bytes != bytes ||
            h->header_bytes != header_bytes_of(&g) || h->slot_stride != stride_of(g.slot_size))
            rc = -EDOM;
    }
    if (rc != 0) {
        munmap(m, bytes);
        return rc;
    }
    pk_pipe *p = calloc(1, sizeof *p);
    if (!p) {
        munmap(m, bytes);
        return -ENOMEM;
    }
    fill_handle(p, h, bytes);
    *out = p;
    return 0;
}

int pk_pipe_info_get(const pk_pipe *p, pk_pipe_info *out)
{
    if (!p || !out)
        return -EINVAL;
    const pk_hdr *h = p->hdr;
    out->geometry = (pk_geometry){h->slot_size, h->slots, h->shape, h->flags,
                                  h->max_readers, h->max_writers, h->start_pos};
    out->total_bytes = h->total_bytes;
    out->creator_pid = h->creator_pid;
    out->abi_version = h->abi_version;
    out->created_ns = h->created_ns;
    out->creator_start = h->creator_start;
    return 0;
}

/* Relaxed: taking a reference needs no ordering; dropping one does (pk_pipe_unref). */
void pk_pipe_ref(pk_pipe *p) { atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); }

void pk_pipe_unref(pk_pipe *p)
{
    /* acq_rel: every use of the mapping by other holders happens before the unmap. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        munmap(p->hdr, p->map_bytes);
        free(p);
    }
}

void pk_pipe_close(pk_pipe *p)
{
    if (p)
        pk_pipe_unref(p);
}

int pk_pipe_unlink(const char *shm_name)
{
    if (!shm_name)
        return -EINVAL;
    return shm_unlink(shm_name) == 0 ? 0 : -errno;
}

int pk_pipe_stats(const pk_pipe *p, pk_stats *out, pk_reader_stats *readers, uint32_t nreaders,
                  pk_writer_stats *writers, uint32_t nwriters)
{
    if (!p || !out)
        return -EINVAL;
    pk_hdr *h = p->hdr;
    /* Relaxed loads throughout: counters are monotonic and each is owned by one side, so a
     * snapshot may be slightly stale but never torn, and we never write the data path. */
    uint64_t head = pk_ld_rlx(&h->head);
    uint64_t slowest = head;
    uint32_t nr = nreaders < h->max_readers ? nreaders : h->max_readers;
    for (uint32_t i = 0; i < h->max_readers; i++) {
        pk_reader_rec *rr = &p->readers[i];
        int32_t pid = pk_ld_rlx(&rr->pid);
        uint64_t tail = pk_ld_rlx(&rr->tail);
        int counts = p->shape != PK_SHAPE_MULTIPLEXER || pid > 0;
        if (counts && pk_diff(tail, slowest) < 0)
            slowest = tail;
        if (i < nr && readers) {
            readers[i] = (pk_reader_stats){
                .pid = pid,
                .alive = pk_peer_alive(pk_ld_rlx(&rr->pidns), pid, pk_ld_rlx(&rr->start)),
                .position = tail,
                .messages = pk_ld_rlx(&rr->messages),
                .bytes = pk_ld_rlx(&rr->bytes),
                .drops = pk_ld_rlx(&rr->drops),
                .waits = pk_ld_rlx(&rr->waits),
            };
        }
    }
    uint32_t nw = nwriters < h->max_writers ? nwriters : h->max_writers;
    for (uint32_t i = 0; i < nw && writers; i++) {
        pk_writer_rec *wr = &p->writers[i];
        int32_t pid = pk_ld_rlx(&wr->pid);
        writers[i] = (pk_writer_stats){
            .pid = pid,
            .alive = pk_peer_alive(pk_ld_rlx(&wr->pidns), pid, pk_ld_rlx(&wr->start)),
            .messages = pk_ld_rlx(&wr->messages),
            .bytes = pk_ld_rlx(&wr->bytes),
            .waits = pk_ld_rlx(&wr->waits),
            .full = pk_ld_rlx(&wr->full),
        };
    }
    uint64_t fill = pk_diff(head, slowest) > 0 ? head - slowest : 0;
    out->head = head;
    out->start_pos = h->start_pos;
    out->fill = fill > h->slots ? h->slots : fill;
    out->readers = nr;
    out->writers = nw;
    return 0;
}
