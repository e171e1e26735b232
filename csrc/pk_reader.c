/* pk_reader.c - attaching readers and consuming messages.
 *
 * A reader owns its record's tail: it reads the slot at pos once seq == pos + 1, then
 * stores tail = pos + 1 (release) so writers may reuse the slot. Lossless mode never lets a
 * writer overwrite a slot before every reader's tail passed it. Lossy mode does; the reader
 * then detects the overrun (seq ahead of pos + 1, or changed during its copy), jumps to
 * the oldest slot still intact and counts what it skipped as drops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pk_layout.h"

static inline void advance(pk_reader *r, uint64_t next)
{
    r->pos = next;
    /* Pairs with the writers' load-acquire in slowest_tail: our reads of the slots before
     * `next` happen before any writer reuses them. */
    pk_st_rel(&r->rec->tail, next);
}

/* Lossy: we fell behind by more than a lap. Jump to the oldest slot a writer is not about
 * to overwrite and count the skipped positions as drops. */
static void resync(pk_reader *r)
{
    pk_pipe *p = r->p;
    uint64_t head = pk_ld_acq(&p->hdr->head); /* pairs with the writers' head release/CAS */
    uint64_t next = head - p->slots + 1;
    if (pk_diff(next, r->pos + 1) < 0)
        next = r->pos + 1;
    pk_own_add(&r->rec->drops, next - r->pos);
    advance(r, next);
}

/* 1 if a message is ready at r->pos (aborted slots are skipped), 0 if none. */
static int ready(void *ctx)
{
    pk_reader *r = ctx;
    pk_pipe *p = r->p;
    /* Bounded: each round advances pos; only a corrupted segment needs more than a lap. */
    for (uint64_t round = 0; round <= 2 * (uint64_t)p->slots; round++) {
        pk_slot *s = pk_slot_at(p, r->pos);
        uint64_t seq = pk_ld_acq(&s->seq); /* pairs with the writer's publishing release */
        int64_t d = pk_diff(seq, r->pos + 1);
        if (d < 0)
            return 0;
        if (d > 0) { /* lossy only: overwritten by a later lap (or its marker) */
            resync(r);
            continue;
        }
        if (pk_ld_rlx(&s->len) == PK_LEN_ABORTED) { /* a dead or aborting writer's claim */
            advance(r, r->pos + 1);
            /* Skipping frees a slot like taking one does: a writer asleep on a full ring
             * must hear of it now, not at its next liveness tick (rare: no per-message cost). */
            if (!p->lossy)
                pk_wake(&p->hdr->space_word, &p->hdr->space_waiters);
            continue;
        }
        return 1;
    }
    return 0;
}

static int reader_tick(void *ctx)
{
    pk_reader *r = ctx;
    pk_pipe *p = r->p;
    /* head acquire pairs with the claim CAS: the claimers' advertised ranges are visible. */
    if (p->shape == PK_SHAPE_COMBINER && pk_diff(pk_ld_acq(&p->hdr->head), r->pos) > 0 &&
        pk_repair_lock(p)) {
        pk_repair_pos(p, r->pos); /* a dead writer's claim may be what we wait for */
        pk_repair_unlock(p);
    }
    pk_reap_writers(p);
    /* writer_seen acquire pairs with pk_writer_attach's release. */
    if (!pk_ld_acq(&p->hdr->writer_seen) || pk_any_live_writer(p))
        return 0;
    /* No writer left. The acquire loads of their pids above pair with their detach's
     * release, so anything they published is visible to this final check. */
    if (ready(r) || pk_diff(pk_ld_acq(&p->hdr->head), r->pos) > 0)
        return 0;
    return -EPIPE;
}

static int wait_ready(pk_reader *r, int64_t timeout_ns)
{
    pk_hdr *h = r->p->hdr;
    return pk_wait(&h->data_word, &h->data_waiters, ready, reader_tick, r, timeout_ns,
                   r->spin_ns, &r->rec->waits, &r->late_wakeups, &r->tick_at);
}

static inline void wake_writers(pk_reader *r)
{
    if (!r->p->lossy)
        pk_wake(&r->p->hdr->space_word, &r->p->hdr->space_waiters);
}

static inline void count_read(pk_reader *r, uint64_t n, uint64_t bytes)
{
    pk_own_add(&r->rec->messages, n);
    pk_own_add(&r->rec->bytes, bytes);
}

/* Copies the ready message at pos into buf. 1 done, 0 lost it to an overrun (lossy). */
static int take(pk_reader *r, char *buf, uint32_t cap, uint32_t *len)
{
    pk_pipe *p = r->p;
    uint64_t pos = r->pos;
    pk_slot *s = pk_slot_at(p, pos);
    uint32_t n = pk_ld_rlx(&s->len); /* ordered after ready()'s load-acquire of seq */
    if (p->lossy) {
        if (n > p->slot_size) { /* a torn len: the slot is being rewritten */
            resync(r);
            return 0;
        }
        if (n > cap) {
            /* Too big for the caller's buffer, if len was not torn: ask the seqlock (the
             * acquire fence orders the len load before the seq re-check). */
            pk_fence_acq();
            if (pk_ld_rlx(&s->seq) == pos + 1)
                return -EMSGSIZE; /* the message stays queued, as in lossless mode */
            resync(r);
            return 0;
        }
        memcpy(buf, pk_payload(s), n);
        /* Seqlock reader: the copy happens before the re-check (pairs with the writer's
         * release fence after its marker store). */
        pk_fence_acq();
        if (pk_ld_rlx(&s->seq) != pos + 1) { /* ordered by the acquire fence above */
            resync(r);
            return 0;
        }
    } else {
        /* No writer publishes more than a slot holds: a larger len is a damaged segment, and
         * copying it could run past the mapping whatever the caller's buffer holds. */
        if (n > p->slot_size)
            return -EBADMSG;
        if (n > cap)
            return -EMSGSIZE;
        memcpy(buf, pk_payload(s), n);
    }
    *len = n;
    advance(r, pos + 1);
    return 1;
}

/* ---- public --------------------------------------------------------------------------- */

int pk_reader_attach(pk_pipe *p, pk_reader **out)
{
    if (!p || !out)
        return -EINVAL;
    int32_t me = (int32_t)getpid();
    for (int attempt = 0; attempt < 2; attempt++) {
        for (uint32_t i = 0; i < p->hdr->max_readers; i++) {
            pk_reader_rec *rr = &p->readers[i];
            int32_t expected = 0;
            /* seq_cst CAS: the store half of the Dekker pair with slowest_tail (below). */
            if (!atomic_compare_exchange_strong(&rr->pid, &expected, me))
                continue;
            pk_reader *r = calloc(1, sizeof *r);
            if (!r) {
                pk_st_rel(&rr->pid, 0); /* give the record back (pairs with attachers' CAS) */
                return -ENOMEM;
            }
            pk_pipe_ref(p);
            pk_st_rlx(&rr->pidns, pk_self_pidns()); /* published by the start release below */
            pk_st_rel(&rr->start, pk_self_start()); /* publishes pidns too */
            r->p = p;
            r->rec = rr;
            r->index = i;
            r->spin_ns = PK_DEFAULT_SPIN_NS;
            r->pid = me;
            if (p->shape == PK_SHAPE_MULTIPLEXER) {
                /* A late reader starts at the head. The fence orders our pid CAS before the
                 * head load (Dekker with slowest_tail): a writer that missed us had stored
                 * its head before scanning, so we start at or after anything it may
                 * overwrite. */
                pk_fence_sc();
                advance(r, pk_ld_acq(&p->hdr->head)); /* pairs with the writer's head release */
            } else {
                r->pos = pk_ld_acq(&rr->tail); /* one reader: continue where the last stopped */
            }
            pk_st_rel(&p->hdr->reader_seen, 1); /* pairs with writer_tick's acquire */
            pk_wake(&p->hdr->space_word, &p->hdr->space_waiters); /* our tail may free room */
            *out = r;
            return 0;
        }
        if (pk_reap_readers(p) == 0)
            break;
    }
    return p->shape == PK_SHAPE_MULTIPLEXER ? -ENOSPC : -EBUSY;
}

void pk_reader_set_spin(pk_reader *r, uint32_t spin_ns)
{
    if (r)
        r->spin_ns = spin_ns;
}

uint32_t pk_reader_index(const pk_reader *r) { return r ? r->index : 0; }

uint64_t pk_reader_late_wakeups(const pk_reader *r) { return r ? r->late_wakeups : 0; }

/* Relaxed: our own counter. */
uint64_t pk_reader_drops(const pk_reader *r) { return r ? pk_ld_rlx(&r->rec->drops) : 0; }

int pk_recv(pk_reader *r, char *buf, uint32_t cap, uint32_t *len, int64_t timeout_ns)
{
    if (!r)
        return -EBADF;
    if (r->viewing)
        return -EALREADY;
    int64_t deadline = 0; /* read from the clock only once we must wait: not per message */
    for (;;) {
        int rc = ready(r);
        if (rc == 0) {
            int64_t left = timeout_ns;
            if (timeout_ns > 0) {
                int64_t now = pk_now_ns();
                if (deadline == 0)
                    deadline = now + timeout_ns;
                left = deadline > now ? deadline - now : 0;
            }
            rc = wait_ready(r, left);
            if (rc <= 0)
                return rc;
        }
        rc = take(r, buf, cap, len);
        if (rc == 1) {
            count_read(r, 1, *len);
            wake_writers(r);
        }
        if (rc != 0)
            return rc;
    }
}

int64_t pk_recv_try(pk_reader *r, char *buf, uint32_t cap)
{
    if (!r)
        return -EBADF;
    if (r->viewing)
        return -EALREADY;
    /* ready() alone: no clock read, no liveness tick, nothing counted when empty. */
    if (!ready(r))
        return -EAGAIN;
    uint32_t len = 0;
    int rc = take(r, buf, cap, &len);
    if (rc == 1) {
        count_read(r, 1, len);
        wake_writers(r);
        return len;
    }
    /* 0: lossy, overwritten during the copy (take resynced). Retrying could go on while a
     * fast writer keeps lapping us, and the caller may hold a lock: pk_recv retries. */
    return rc == 0 ? -EAGAIN : rc;
}

int64_t pk_recv_len(pk_reader *r, char *buf, uint32_t cap, int64_t timeout_ns)
{
    uint32_t len = 0;
    int rc = pk_recv(r, buf, cap, &len, timeout_ns);
    return rc == 1 ? (int64_t)len : rc == 0 ? -ETIMEDOUT : rc;
}

int pk_recv_batch(pk_reader *r, char *buf, uint64_t cap, uint32_t *lens, uint32_t max_n,
                  int64_t timeout_ns)
{
    if (!r)
        return -EBADF;
    if (r->viewing)
        return -EALREADY;
    if (max_n == 0)
        return 0;
    int64_t deadline = timeout_ns < 0 ? -1 : pk_now_ns() + timeout_ns;
    uint32_t got = 0;
    uint64_t used = 0;
    while (got == 0) {
        if (!ready(r)) {
            int64_t left = deadline < 0 ? -1 : deadline - pk_now_ns();
            int rc = wait_ready(r, left < 0 && deadline >= 0 ? 0 : left);
            if (rc <= 0)
                return rc;
        }
        while (got < max_n && ready(r)) {
            uint64_t room = cap - used;
            /* ordered after ready()'s load-acquire of the slot's seq */
            uint32_t n = pk_ld_rlx(&pk_slot_at(r->p, r->pos)->len);
            if (n <= r->p->slot_size && n > room)
                break; /* the caller's buffer is full */
            int rc = take(r, buf + used, room > UINT32_MAX ? UINT32_MAX : (uint32_t)room,
                          &lens[got]);
            if (rc < 0)
                return got ? (int)got : rc;
            if (rc == 1)
                used += lens[got++];
        }
        if (got == 0 && cap < r->p->slot_size)
            return -EMSGSIZE;
    }
    count_read(r, got, used);
    wake_writers(r);
    return (int)got;
}

/* The message at pos is ready: hand it out until pk_release. */
static int open_view(pk_reader *r, const void **data, uint32_t *len)
{
    pk_slot *s = pk_slot_at(r->p, r->pos);
    uint32_t n = pk_ld_rlx(&s->len); /* ordered after ready()'s load-acquire of seq */
    *data = pk_payload(s);
    *len = n > r->p->slot_size ? r->p->slot_size : n; /* lossy torn len: caught at release */
    r->viewing = 1;
    return 1;
}

int pk_view(pk_reader *r, const void **data, uint32_t *len, int64_t timeout_ns)
{
    if (!r)
        return -EBADF;
    if (r->viewing)
        return -EALREADY;
    if (!ready(r)) {
        int rc = wait_ready(r, timeout_ns);
        if (rc <= 0)
            return rc;
    }
    return open_view(r, data, len);
}

int pk_view_try(pk_reader *r, const void **data, uint32_t *len)
{
    if (!r)
        return -EBADF;
    if (r->viewing || !ready(r)) /* an open view (an error) is left to pk_view */
        return -EAGAIN;
    return open_view(r, data, len);
}

int pk_view_cancel(pk_reader *r)
{
    if (!r)
        return -EBADF;
    if (!r->viewing)
        return -EINVAL;
    r->viewing = 0; /* the message stays: the next recv or view gets it again */
    return 1;
}

int pk_release(pk_reader *r)
{
    if (!r)
        return -EBADF;
    if (!r->viewing)
        return -EINVAL;
    r->viewing = 0;
    pk_pipe *p = r->p;
    uint64_t pos = r->pos;
    pk_slot *s = pk_slot_at(p, pos);
    uint32_t n = pk_ld_rlx(&s->len); /* for the statistics only */
    if (p->lossy) {
        pk_fence_acq(); /* seqlock reader: the caller's reads of the view come before this */
        if (pk_ld_rlx(&s->seq) != pos + 1) {
            resync(r); /* overwritten while viewed: the caller saw a torn message */
            return 0;
        }
    }
    advance(r, pos + 1);
    count_read(r, 1, n);
    wake_writers(r);
    return 1;
}

void pk_reader_detach(pk_reader *r)
{
    if (!r)
        return;
    pk_pipe *p = r->p;
    if ((int32_t)getpid() != r->pid) { /* a forked child's copy: the record is the parent's */
        free(r);
        pk_pipe_unref(p);
        return;
    }
    pk_st_rlx(&r->rec->start, 0); /* published by the pid release below */
    /* Pairs with writers' load-acquire of pid (slowest_tail, ticks). */
    pk_st_rel(&r->rec->pid, 0);
    pk_wake(&p->hdr->space_word, &p->hdr->space_waiters); /* a slow reader leaving frees room */
    free(r);
    pk_pipe_unref(p);
}
