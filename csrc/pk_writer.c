/* pk_writer.c - attaching writers and publishing messages.
 *
 * Single-writer shapes (one, multiplexer): the writer owns hdr->head; it writes slot pos,
 * publishes seq = pos + 1, then advances head. Combiner: a writer advertises its claim
 * (pk_set_claim), takes positions with a CAS on head, writes and publishes each slot,
 * then clears its claim. Lossless: a position may be taken only when the slowest reader
 * is less than `slots` behind it. Lossy: writers never wait for readers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pk_layout.h"

/* ---- space ---------------------------------------------------------------------------- */

static uint64_t slowest_tail(pk_pipe *p, uint64_t head)
{
    if (p->shape != PK_SHAPE_MULTIPLEXER)
        return pk_ld_acq(&p->readers[0].tail); /* pairs with the reader's store-release */
    /* Dekker with pk_reader_attach: our head store (before this fence) vs its pid CAS. Either
     * we see the new reader here, or its head load sees our head, and it starts there. */
    pk_fence_sc();
    uint64_t m = head;
    for (uint32_t i = 0; i < p->hdr->max_readers; i++) {
        pk_reader_rec *rr = &p->readers[i];
        if (pk_ld_acq(&rr->pid) > 0) { /* pairs with attach's CAS / detach's release */
            uint64_t t = pk_ld_acq(&rr->tail); /* pairs with the reader's store-release */
            if (pk_diff(t, m) < 0)
                m = t;
        }
    }
    return m;
}

/* Free positions at `pos` per the cached tail; refreshes the cache when it says none. */
static uint64_t free_at(pk_writer *w, uint64_t pos)
{
    pk_pipe *p = w->p;
    int64_t used = pk_diff(pos, w->tail_cache);
    if (used < (int64_t)p->slots)
        return p->slots - (uint64_t)used;
    w->tail_cache = slowest_tail(p, pos);
    used = pk_diff(pos, w->tail_cache);
    return used < (int64_t)p->slots ? p->slots - (uint64_t)used : 0;
}

static uint64_t cur_pos(pk_writer *w)
{
    /* combiner: head acquire pairs with the other writers' claim CAS */
    return w->p->shape == PK_SHAPE_COMBINER ? pk_ld_acq(&w->p->hdr->head) : w->pos;
}

static int has_space(void *ctx)
{
    pk_writer *w = ctx;
    uint64_t pos = cur_pos(w);
    uint64_t room = free_at(w, pos); /* refreshes the cache itself when it says "none" */
    if (room >= w->need)
        return 1;
    /* Some room, less than the hysteresis asks for: free_at trusts its cache, which would
     * then never see the reader's progress until the spin ran out. Look again every 16th
     * poll, not every one, so the reader's tail line is not pulled away per message. */
    if (room == 0 || (++w->polls & 15) != 0)
        return 0;
    w->tail_cache = slowest_tail(w->p, pos);
    return free_at(w, pos) >= w->need;
}

static int writer_tick(void *ctx)
{
    pk_writer *w = ctx;
    pk_pipe *p = w->p;
    pk_reap_readers(p);
    if (p->shape == PK_SHAPE_MULTIPLEXER)
        return 0; /* readers come and go; with none, nothing limits the writer */
    if (p->shape == PK_SHAPE_COMBINER)
        pk_reap_writers(p); /* a dead writer's claim must not look like a live one */
    pk_reader_rec *rr = &p->readers[0];
    /* acquires pair with the reader's attach CAS and reader_seen release */
    int32_t pid = pk_ld_acq(&rr->pid);
    if (pid > 0 || !pk_ld_acq(&p->hdr->reader_seen))
        return 0; /* a live reader, or none yet: keep waiting */
    return has_space(w) ? 0 : -EPIPE;
}

/* Waits until at least one position is free; 1, 0 (timeout) or -errno. */
static int wait_space(pk_writer *w, int64_t timeout_ns)
{
    pk_hdr *h = w->p->hdr;
    int rc = 0;
    if (timeout_ns != 0 && w->spin_ns > 0) {
        /* Hysteresis while spinning: wait for a few free slots, not one, so a slower reader
         * runs ahead without trading its tail's cache line with us message by message. The
         * sleep below waits for one slot again: room is never refused for long. */
        uint32_t batch = w->p->slots / 8;
        w->need = batch < 1 ? 1 : batch > 32 ? 32 : batch;
        int64_t spin = timeout_ns < 0 || timeout_ns > w->spin_ns ? w->spin_ns : timeout_ns;
        rc = pk_wait(&h->space_word, &h->space_waiters, has_space, writer_tick, w, spin, spin,
                     NULL, NULL, &w->tick_at);
        w->need = 1;
        if (rc != 0)
            return rc;
        if (timeout_ns > 0)
            timeout_ns = timeout_ns > spin ? timeout_ns - spin : 1;
    }
    rc = pk_wait(&h->space_word, &h->space_waiters, has_space, writer_tick, w, timeout_ns,
                 0, &w->rec->waits, &w->late_wakeups, &w->tick_at);
    if (rc == 0)
        pk_own_add(&w->rec->full, 1);
    return rc;
}

/* ---- publishing ----------------------------------------------------------------------- */

static inline void *begin_slot(pk_pipe *p, uint64_t pos)
{
    pk_slot *s = pk_slot_at(p, pos);
    if (p->lossy) {
        pk_st_rlx(&s->seq, pos); /* seqlock marker: "pos being written" */
        /* The marker is visible before any payload byte (pairs with the reader's acquire
         * fence and seq reload after its copy). */
        pk_fence_rel();
    }
    return pk_payload(s);
}

static inline void end_slot(pk_pipe *p, uint64_t pos, uint32_t len)
{
    pk_slot *s = pk_slot_at(p, pos);
    pk_st_rlx(&s->len, len); /* published by the seq release below */
    /* Publish: payload and len are visible before seq (pairs with readers' load-acquire). */
    pk_st_rel(&s->seq, pos + 1);
}

static inline void count_sent(pk_writer *w, uint64_t n, uint64_t bytes)
{
    pk_own_add(&w->rec->messages, n);
    pk_own_add(&w->rec->bytes, bytes);
}

static inline void advance_head(pk_writer *w, uint64_t next)
{
    w->pos = next;
    /* Single writer: readers use head only for lossy resync, attach and stats (their data
     * comes from slot seq), so release is enough; attach pairs via slowest_tail's fence. */
    pk_st_rel(&w->p->hdr->head, next);
}

/* Writes and publishes one message at `pos` (taken: owned or claimed), then wakes readers. */
static void publish_one(pk_writer *w, uint64_t pos, const char *data, uint32_t len)
{
    pk_pipe *p = w->p;
    memcpy(begin_slot(p, pos), data, len);
    end_slot(p, pos, len);
    if (p->shape == PK_SHAPE_COMBINER)
        pk_set_claim(w, 0, 0);
    else
        advance_head(w, pos + 1);
    count_sent(w, 1, len);
    pk_wake(&p->hdr->data_word, &p->hdr->data_waiters);
}

/* Combiner: claim up to `want` free positions; returns how many (0 = none free). */
static uint32_t claim(pk_writer *w, uint32_t want, uint64_t *first)
{
    pk_pipe *p = w->p;
    pk_hdr *h = p->hdr;
    for (;;) {
        uint64_t head = pk_ld_acq(&h->head); /* pairs with the other writers' CAS */
        uint64_t avail = p->lossy ? p->slots : free_at(w, head);
        if (avail == 0)
            return 0;
        uint32_t n = want < avail ? want : (uint32_t)avail;
        pk_set_claim(w, head, n); /* advertised before the CAS: see pk_repair.c */
        /* acq_rel: repairers that load head past our range also see the claim above. */
        if (atomic_compare_exchange_weak_explicit(&h->head, &head, head + n,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            *first = head;
            return n;
        }
        pk_set_claim(w, 0, 0);
    }
}

static int prev_lap_done(void *ctx)
{
    pk_writer *w = ctx;
    uint64_t pos = w->reserved;
    if (w->prev_lap_give_up)
        return 1;
    /* pairs with the previous lap writer's publishing release of seq */
    return pk_diff(pk_ld_acq(&pk_slot_at(w->p, pos)->seq), pos + 1 - w->p->slots) >= 0;
}

static int prev_lap_tick(void *ctx)
{
    pk_writer *w = ctx;
    if (pk_repair_lock(w->p)) {
        pk_repair_pos(w->p, w->reserved - w->p->slots);
        pk_repair_unlock(w->p);
    }
    pk_reap_writers(w->p);
    /* Unpublished, unrepairable and no live writer below us for ~5 ticks: no writer leaves a
     * slot like that (a corrupted segment). Lossy mode may overwrite, so do not hang. */
    if (++w->prev_lap_ticks >= 5 && !pk_live_claim_below(w->p, w->reserved, w->index))
        w->prev_lap_give_up = 1;
    return 0;
}

/* Lossy combiner: another writer may still be writing this slot's previous lap; wait for it
 * so two writers never share a slot (bounded: it is mid-copy, or dead and repaired). */
static void wait_prev_lap(pk_writer *w, uint64_t pos)
{
    if (!w->p->lossy || w->p->shape != PK_SHAPE_COMBINER)
        return;
    w->reserved = pos;
    w->prev_lap_ticks = 0;
    w->prev_lap_give_up = 0;
    pk_hdr *h = w->p->hdr;
    while (pk_wait(&h->data_word, &h->data_waiters, prev_lap_done, prev_lap_tick, w, -1,
                   w->spin_ns, NULL, NULL, &w->tick_at) != 1)
        ; /* -EINTR: the position is already ours, so finish it before returning */
}

/* ---- public --------------------------------------------------------------------------- */

int pk_writer_attach(pk_pipe *p, pk_writer **out)
{
    if (!p || !out)
        return -EINVAL;
    int32_t me = (int32_t)getpid();
    for (int attempt = 0; attempt < 2; attempt++) {
        for (uint32_t i = 0; i < p->hdr->max_writers; i++) {
            pk_writer_rec *wr = &p->writers[i];
            int32_t expected = 0;
            /* seq_cst CAS: acquire pairs with the previous owner's (or reaper's) release. */
            if (!atomic_compare_exchange_strong(&wr->pid, &expected, me))
                continue;
            pk_writer *w = calloc(1, sizeof *w);
            if (!w) {
                pk_st_rel(&wr->pid, 0); /* give the record back (pairs with attachers' CAS) */
                return -ENOMEM;
            }
            pk_pipe_ref(p);
            pk_st_rlx(&wr->pidns, pk_self_pidns()); /* published by the start release below */
            pk_st_rel(&wr->start, pk_self_start()); /* publishes pidns too */
            w->p = p;
            w->rec = wr;
            w->index = i;
            w->pid = me;
            w->spin_ns = PK_DEFAULT_SPIN_NS;
            w->need = 1;
            uint32_t g = pk_ld_rlx(&wr->claim_gen);
            w->claim_gen = g & 1 ? g + 1 : g;
            pk_set_claim(w, 0, 0);
            w->pos = pk_ld_acq(&p->hdr->head);
            w->tail_cache = w->pos - p->slots; /* "full": the first send refreshes it */
            pk_st_rel(&p->hdr->writer_seen, 1);
            *out = w;
            return 0;
        }
        if (pk_reap_writers(p) == 0)
            break;
    }
    return p->shape == PK_SHAPE_COMBINER ? -ENOSPC : -EBUSY;
}

void pk_writer_set_spin(pk_writer *w, uint32_t spin_ns)
{
    if (w)
        w->spin_ns = spin_ns;
}

uint32_t pk_writer_index(const pk_writer *w) { return w ? w->index : 0; }

uint64_t pk_writer_late_wakeups(const pk_writer *w) { return w ? w->late_wakeups : 0; }

/* The try entries' one step: take the next position if that needs no wait (1, in *pos).
 * 0 when it would: no room, an open reservation (an error the full call reports), or a lossy
 * combiner, which may wait for a slot's previous lap. Nothing is counted either way. */
static int take_now(pk_writer *w, uint64_t *pos)
{
    pk_pipe *p = w->p;
    if (w->has_reserved || (p->lossy && p->shape == PK_SHAPE_COMBINER))
        return 0;
    *pos = w->pos;
    if (p->shape == PK_SHAPE_COMBINER)
        return claim(w, 1, pos) != 0;
    return p->lossy || free_at(w, *pos) != 0;
}

/* Position `pos` is ours (owned or claimed): hand its payload out for writing. */
static int hold_reserved(pk_writer *w, uint64_t pos, void **data)
{
    w->reserved = pos;
    w->has_reserved = 1;
    *data = begin_slot(w->p, pos);
    return 1;
}

int pk_reserve(pk_writer *w, void **data, int64_t timeout_ns)
{
    if (!w)
        return -EBADF;
    if (w->has_reserved)
        return -EALREADY;
    pk_pipe *p = w->p;
    uint64_t pos;
    if (p->shape == PK_SHAPE_COMBINER) {
        while (claim(w, 1, &pos) == 0) {
            int rc = wait_space(w, timeout_ns);
            if (rc <= 0)
                return rc;
        }
        wait_prev_lap(w, pos);
    } else {
        pos = w->pos;
        if (!p->lossy && free_at(w, pos) == 0) {
            int rc = wait_space(w, timeout_ns);
            if (rc <= 0)
                return rc;
        }
    }
    return hold_reserved(w, pos, data);
}

int pk_reserve_try(pk_writer *w, void **data)
{
    if (!w)
        return -EBADF;
    uint64_t pos;
    return take_now(w, &pos) ? hold_reserved(w, pos, data) : -EAGAIN;
}

static void finish_reserved(pk_writer *w, uint32_t len)
{
    pk_pipe *p = w->p;
    uint64_t pos = w->reserved;
    end_slot(p, pos, len);
    w->has_reserved = 0;
    if (p->shape == PK_SHAPE_COMBINER)
        pk_set_claim(w, 0, 0);
    else
        advance_head(w, pos + 1);
    pk_wake(&p->hdr->data_word, &p->hdr->data_waiters);
}

int pk_commit(pk_writer *w, uint32_t len)
{
    if (!w)
        return -EBADF;
    if (!w->has_reserved)
        return -EINVAL;
    if (len > w->p->slot_size)
        return -EMSGSIZE;
    finish_reserved(w, len);
    count_sent(w, 1, len);
    return 1;
}

int pk_abort(pk_writer *w)
{
    if (!w)
        return -EBADF;
    if (!w->has_reserved)
        return 0;
    pk_pipe *p = w->p;
    if (p->shape != PK_SHAPE_COMBINER && !p->lossy) {
        w->has_reserved = 0; /* nothing was published: the position is simply reused */
        return 1;
    }
    /* The position is claimed (combiner) or its old message already marked overwritten
     * (lossy): publish it as aborted, which readers skip. */
    finish_reserved(w, PK_LEN_ABORTED);
    return 1;
}

int pk_send(pk_writer *w, const char *data, uint32_t len, int64_t timeout_ns)
{
    if (!w)
        return -EBADF;
    pk_pipe *p = w->p;
    if (len > p->slot_size)
        return -EMSGSIZE;
    if (w->has_reserved)
        return -EALREADY;
    if (p->shape == PK_SHAPE_COMBINER) {
        void *dst;
        int rc = pk_reserve(w, &dst, timeout_ns);
        if (rc <= 0)
            return rc;
        memcpy(dst, data, len);
        return pk_commit(w, len);
    }
    uint64_t pos = w->pos;
    if (!p->lossy && free_at(w, pos) == 0) {
        int rc = wait_space(w, timeout_ns);
        if (rc <= 0)
            return rc;
    }
    publish_one(w, pos, data, len);
    return 1;
}

int pk_send_try(pk_writer *w, const char *data, uint32_t len)
{
    if (!w)
        return -EBADF;
    uint64_t pos;
    if (len > w->p->slot_size || !take_now(w, &pos)) /* an oversize error: pk_send says so */
        return -EAGAIN;
    publish_one(w, pos, data, len);
    return 1;
}

/* Sends n messages: message i has lens[i] bytes (or `fixed` bytes at i * stride when lens
 * is NULL). Returns how many were sent before the timeout (0 = none) or -errno. */
static int send_many(pk_writer *w, const char *data, const uint32_t *lens, uint32_t fixed,
                     uint32_t stride, uint32_t n, int64_t timeout_ns)
{
    if (!w)
        return -EBADF;
    pk_pipe *p = w->p;
    if (w->has_reserved)
        return -EALREADY;
    if (lens) {
        for (uint32_t i = 0; i < n; i++)
            if (lens[i] > p->slot_size)
                return -EMSGSIZE;
    } else if (fixed > p->slot_size) {
        return -EMSGSIZE;
    }
    int64_t deadline = timeout_ns < 0 ? -1 : pk_now_ns() + timeout_ns;
    uint32_t sent = 0;
    const char *src = data;
    while (sent < n) {
        uint64_t pos;
        uint64_t k;
        if (p->shape == PK_SHAPE_COMBINER) {
            k = claim(w, n - sent, &pos);
        } else {
            pos = w->pos;
            k = p->lossy ? n - sent : free_at(w, pos);
            if (k > n - sent)
                k = n - sent;
        }
        if (k == 0) {
            int64_t left = deadline < 0 ? -1 : deadline - pk_now_ns();
            int rc = wait_space(w, left < 0 && deadline >= 0 ? 0 : left);
            if (rc <= 0)
                return sent > 0 ? (int)sent : rc;
            continue;
        }
        uint64_t bytes = 0;
        for (uint64_t j = 0; j < k; j++) {
            uint32_t len = lens ? lens[sent + j] : fixed;
            wait_prev_lap(w, pos + j);
            memcpy(begin_slot(p, pos + j), src, len);
            end_slot(p, pos + j, len);
            src += lens ? len : stride;
            bytes += len;
        }
        if (p->shape == PK_SHAPE_COMBINER)
            pk_set_claim(w, 0, 0);
        else
            advance_head(w, pos + k);
        sent += (uint32_t)k;
        count_sent(w, k, bytes);
        pk_wake(&p->hdr->data_word, &p->hdr->data_waiters);
    }
    return (int)sent;
}

int pk_send_batch(pk_writer *w, const char *data, const uint32_t *lens, uint32_t n,
                  int64_t timeout_ns)
{
    if (!lens && n)
        return -EINVAL;
    return send_many(w, data, lens, 0, 0, n, timeout_ns);
}

int pk_send_strided(pk_writer *w, const char *data, uint32_t stride, uint32_t len, uint32_t n,
                    int64_t timeout_ns)
{
    if (stride < len)
        return -EINVAL;
    return send_many(w, data, NULL, len, stride, n, timeout_ns);
}

void pk_writer_detach(pk_writer *w)
{
    if (!w)
        return;
    pk_pipe *p = w->p;
    if ((int32_t)getpid() != w->pid) { /* a forked child's copy: the record is the parent's */
        free(w);
        pk_pipe_unref(p);
        return;
    }
    pk_abort(w);
    pk_set_claim(w, 0, 0);
    pk_st_rlx(&w->rec->start, 0);
    /* Pairs with readers' load-acquire of pid in their liveness tick: everything we
     * published is visible to a reader that sees us gone. */
    pk_st_rel(&w->rec->pid, 0);
    pk_wake(&p->hdr->data_word, &p->hdr->data_waiters);
    free(w);
    pk_pipe_unref(p);
}
