/* pk_repair.c - peers that died: detach them and abort what they left half done.
 *
 * Why the combiner uses a shared claim cursor plus per-slot sequences (Vyukov) rather than
 * per-writer sub-rings: one ring keeps memory at slots x stride whatever max_writers is,
 * the reader polls one slot instead of 32 sub-rings, and arrival order is global. The cost
 * is that a writer dying between its claim (CAS on head) and its publish leaves a hole the
 * reader cannot pass. The hole is repaired here: every writer advertises its claim range
 * (seqlock-protected) *before* the CAS, so a claimed, unpublished position whose only
 * claimers are dead processes can be proven abandoned and is published as "aborted"
 * (PK_LEN_ABORTED), which readers skip. A live claimer always blocks the repair.
 *
 * All repairs run under one repair lock in the header (see RL_* below): two repairers
 * never race on a slot, and a repairer that dies holding it is detected by pid and start
 * time (inside its own pid namespace) and superseded.
 * Repairs only happen on slow paths (sleeping waits, attach), never per message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "pk_layout.h"

/* The repair lock word: generation (16 bits: a thief's CAS fails once the lock changed
 * hands since it looked, ABA) | the holder's start time (low 24 bits of its clock ticks) |
 * its pid (24 bits: pid_max is at most 2^22). Free when the low 48 bits are 0. A holder is
 * judged dead only by pid *and* start time, so a reused pid does not keep a dead holder's
 * lock, and only from inside its own pid namespace (published beside the word). */
#define RL_SHIFT 24
#define RL_LOW ((1ULL << RL_SHIFT) - 1)
#define RL_OWNER ((1ULL << (2 * RL_SHIFT)) - 1)
#define RL_GRACE_NS 1000000000LL /* a holder's namespace unknown this long: judge its pid */

static uint64_t rl_me(void)
{
    return ((pk_self_start() & RL_LOW) << RL_SHIFT) | ((uint64_t)getpid() & RL_LOW);
}

/* 1 unless `word`'s holder is provably dead (busy or not ours to judge count as alive). */
static int rl_holder_alive(pk_pipe *p, uint64_t word)
{
    pk_hdr *h = p->hdr;
    /* acquire pairs with the holder's release store after its CAS; the reload below makes
     * sure the namespace read belongs to this holder (unlock clears it before the word). */
    uint32_t ns = pk_ld_acq(&h->repair_pidns);
    if (pk_ld_acq(&h->repair_owner) != word)
        return 1; /* changed hands meanwhile: look again at the next tick */
    if (ns != 0 && ns != pk_self_pidns())
        return 1; /* another pid namespace: its pids are not ours to judge */
    if (ns == 0) {
        /* The holder took the word but has not published its namespace yet: normally an
         * instant, but it may be preempted, and a holder of another namespace must not be
         * judged by our pids. Busy, until the same word stayed so for RL_GRACE_NS (a holder
         * that died in that instant then wedges repairs for that long, not forever). */
        int64_t now = pk_now_ns();
        if (pk_ld_rlx(&p->rl_unknown_word) != word) {
            pk_st_rlx(&p->rl_unknown_word, word);
            pk_st_rlx(&p->rl_unknown_since, now);
            return 1;
        }
        if (now - pk_ld_rlx(&p->rl_unknown_since) < RL_GRACE_NS)
            return 1;
    }
    int32_t pid = (int32_t)(word & RL_LOW);
    if (!pk_pid_alive(pid, 0))
        return 0;
    /* A live process with that pid: the holder only if its start time matches (a pid that
     * died and was reused reads another start). 0: unreadable (hidepid) or it died just
     * now: not provably dead, so busy (a dead one is found at a later tick). */
    uint64_t start = pk_pid_start_ticks(pid);
    return start == 0 || (start & RL_LOW) == ((word >> RL_SHIFT) & RL_LOW);
}

int pk_repair_lock(pk_pipe *p)
{
    pk_hdr *h = p->hdr;
    uint64_t me = rl_me();
    uint64_t cur = pk_ld_acq(&h->repair_owner); /* pairs with unlock's release */
    uint64_t owner = cur & RL_OWNER;
    if (owner == me)
        return 0; /* another thread of this process holds it */
    if (owner != 0 && rl_holder_alive(p, cur))
        return 0; /* busy: try again next tick */
    uint64_t next = (((cur >> (2 * RL_SHIFT)) + 1) << (2 * RL_SHIFT)) | me;
    /* seq_cst CAS: its acquire pairs with the previous holder's release in unlock (or, when
     * taking over from a dead holder, makes its half-done repairs visible). */
    if (!atomic_compare_exchange_strong(&h->repair_owner, &cur, next))
        return 0;
    pk_st_rel(&h->repair_pidns, pk_self_pidns()); /* pairs with rl_holder_alive's acquire */
    /* Taken from us in between (only after the grace): not ours, repair nothing. */
    return pk_ld_acq(&h->repair_owner) == next; /* pairs with a thief's CAS */
}

void pk_repair_unlock(pk_pipe *p)
{
    pk_hdr *h = p->hdr;
    uint64_t cur = pk_ld_rlx(&h->repair_owner); /* ours, unless it was (wrongly) stolen */
    if ((cur & RL_OWNER) != rl_me())
        return;
    pk_st_rlx(&h->repair_pidns, 0); /* ordered before the release below */
    /* Release (keeping the generation): our repairs happen before the next holder's CAS. */
    atomic_compare_exchange_strong_explicit(&h->repair_owner, &cur, cur & ~RL_OWNER,
                                            memory_order_release, memory_order_relaxed);
}

void pk_set_claim(pk_writer *w, uint64_t pos, uint32_t n)
{
    pk_writer_rec *wr = w->rec;
    uint32_t g = w->claim_gen;
    pk_st_rlx(&wr->claim_gen, g + 1);
    /* Seqlock writer: the odd generation is visible before the new range (pairs with
     * read_claim's acquire fence and generation reload). */
    pk_fence_rel();
    pk_st_rlx(&wr->claim_pos, pos);
    pk_st_rlx(&wr->claim_n, n);
    /* Pairs with read_claim's load-acquire of the generation; when clearing a claim, it
     * also publishes the slots written under it (their seq stores come before). */
    pk_st_rel(&wr->claim_gen, g + 2);
    w->claim_gen = g + 2;
}

/* A consistent (pos, n) of one writer's claim; 0 if the seqlock stayed odd (only a writer
 * that died mid-update leaves it so; the caller then sees possibly torn values). */
static int read_claim(pk_writer_rec *wr, uint64_t *pos, uint32_t *n)
{
    for (int i = 0; i < 4096; i++) {
        uint32_t g1 = pk_ld_acq(&wr->claim_gen); /* pairs with pk_set_claim's final release */
        if (g1 & 1) {
            pk_cpu_relax();
            continue;
        }
        *pos = pk_ld_rlx(&wr->claim_pos);
        *n = pk_ld_rlx(&wr->claim_n);
        pk_fence_acq(); /* seqlock reader: the range loads happen before the re-check */
        if (pk_ld_rlx(&wr->claim_gen) == g1)
            return 1;
    }
    *pos = pk_ld_rlx(&wr->claim_pos);
    *n = pk_ld_rlx(&wr->claim_n);
    return 0;
}

/* 1 if a live writer claims pos (or might: its claim cannot be read); *dead set if a dead
 * writer's claim covers pos. */
static int claimers(pk_pipe *p, uint64_t pos, int *dead)
{
    int live = 0;
    for (uint32_t i = 0; i < p->hdr->max_writers; i++) {
        pk_writer_rec *wr = &p->writers[i];
        int32_t pid = pk_ld_acq(&wr->pid); /* pairs with attach's CAS / detach's release */
        if (pid <= 0)
            continue;
        uint64_t cp;
        uint32_t n;
        int ok = read_claim(wr, &cp, &n);
        int covers = n != 0 && pos - cp < n; /* unsigned: also right across 2^64 */
        int alive = pk_peer_alive(pk_ld_acq(&wr->pidns), pid, pk_ld_acq(&wr->start));
        if (alive && (covers || !ok))
            live = 1;
        else if (!alive && covers)
            *dead = 1;
    }
    return live;
}

int pk_repair_pos(pk_pipe *p, uint64_t pos)
{
    pk_slot *s = pk_slot_at(p, pos);
    for (int guard = 0; guard < 64; guard++) {
        uint64_t seq = pk_ld_acq(&s->seq); /* pairs with writers' store-release */
        if (pk_diff(seq, pos + 1) >= 0)
            return 1;
        /* Which position does the slot wait for? seq == q is a lossy writer's marker for q
         * (same slot index); seq == x + 1 means x was published, so it waits for x + slots. */
        uint64_t q = (seq & p->mask) == (pos & p->mask) ? seq : seq - 1 + p->slots;
        /* head acquire pairs with the claim CAS: claims up to head are advertised. */
        if (pk_diff(pk_ld_acq(&p->hdr->head), q) <= 0)
            return 0; /* nobody claimed q yet */
        int dead = 0;
        if (claimers(p, q, &dead) || !dead)
            return 0; /* a live writer will publish it (or no evidence it was abandoned) */
        /* Published while we looked (the claimer cleared its claim after publishing)? */
        if (pk_ld_acq(&s->seq) != seq)
            continue;
        /* Only dead processes claim q and we hold the repair lock: nobody else writes this
         * slot now. The release CAS makes len visible before the slot reads as published
         * (pairs with readers' load-acquire of seq). */
        pk_st_rlx(&s->len, PK_LEN_ABORTED);
        atomic_compare_exchange_strong_explicit(&s->seq, &seq, q + 1, memory_order_release,
                                                memory_order_relaxed);
    }
    return 0;
}

int pk_reap_writers(pk_pipe *p)
{
    if (!pk_repair_lock(p))
        return 0;
    int reaped = 0;
    for (int pass = 0; pass < 4; pass++) {
        int progress = 0;
        for (uint32_t i = 0; i < p->hdr->max_writers; i++) {
            pk_writer_rec *wr = &p->writers[i];
            /* pid acquire pairs with attach's CAS; start's acquire with attach's release */
            int32_t pid = pk_ld_acq(&wr->pid);
            if (pid <= 0 || pk_peer_alive(pk_ld_acq(&wr->pidns), pid, pk_ld_acq(&wr->start)))
                continue;
            int done = 1;
            if (p->shape == PK_SHAPE_COMBINER) {
                uint64_t cp;
                uint32_t n;
                read_claim(wr, &cp, &n);
                for (uint32_t k = 0; k < n && k < p->slots; k++) {
                    uint64_t q = cp + k;
                    if (pk_diff(pk_ld_acq(&p->hdr->head), q) <= 0) /* as in pk_repair_pos */
                        break; /* the claim's CAS never succeeded this far */
                    int dead = 0;
                    if (!pk_repair_pos(p, q) && !claimers(p, q, &dead) && dead)
                        done = 0; /* still ours and not repairable yet: keep the evidence */
                }
            }
            if (!done)
                continue;
            /* Relaxed: the owner is dead and we hold the repair lock; the pid release below
             * publishes these to the next owner. */
            uint32_t g = pk_ld_rlx(&wr->claim_gen);
            pk_st_rlx(&wr->claim_n, 0);
            pk_st_rlx(&wr->claim_gen, (g | 1) + 1);
            pk_st_rlx(&wr->start, 0);
            /* Pairs with the attachers' CAS on pid: a new owner sees the cleared record. */
            pk_st_rel(&wr->pid, 0);
            reaped++;
            progress = 1;
        }
        if (!progress)
            break;
    }
    pk_repair_unlock(p);
    if (reaped)
        pk_wake(&p->hdr->data_word, &p->hdr->data_waiters); /* readers may pass aborts now */
    return reaped;
}

int pk_reap_readers(pk_pipe *p)
{
    if (!pk_repair_lock(p))
        return 0;
    int reaped = 0;
    for (uint32_t i = 0; i < p->hdr->max_readers; i++) {
        pk_reader_rec *rr = &p->readers[i];
        /* pid acquire pairs with attach's CAS; start's acquire with attach's release */
        int32_t pid = pk_ld_acq(&rr->pid);
        if (pid <= 0 || pk_peer_alive(pk_ld_acq(&rr->pidns), pid, pk_ld_acq(&rr->start)))
            continue;
        pk_st_rlx(&rr->start, 0); /* published by the pid release below */
        pk_st_rel(&rr->pid, 0); /* pairs with attachers' CAS and writers' scans */
        reaped++;
    }
    pk_repair_unlock(p);
    if (reaped)
        pk_wake(&p->hdr->space_word, &p->hdr->space_waiters); /* writers may have room now */
    return reaped;
}

int pk_live_claim_below(pk_pipe *p, uint64_t pos, uint32_t self)
{
    for (uint32_t i = 0; i < p->hdr->max_writers; i++) {
        pk_writer_rec *wr = &p->writers[i];
        int32_t pid = pk_ld_acq(&wr->pid); /* pairs with attach's CAS / detach's release */
        if (i == self || pid <= 0)
            continue;
        uint64_t cp;
        uint32_t n;
        int ok = read_claim(wr, &cp, &n);
        if ((!ok || (n != 0 && pk_diff(cp, pos) < 0)) &&
            pk_peer_alive(pk_ld_acq(&wr->pidns), pid, pk_ld_acq(&wr->start)))
            return 1;
    }
    return 0;
}

int pk_any_live_writer(pk_pipe *p)
{
    for (uint32_t i = 0; i < p->hdr->max_writers; i++) {
        pk_writer_rec *wr = &p->writers[i];
        /* pid acquire pairs with detach's release: what it published is visible to us */
        int32_t pid = pk_ld_acq(&wr->pid);
        if (pid > 0 && pk_peer_alive(pk_ld_acq(&wr->pidns), pid, pk_ld_acq(&wr->start)))
            return 1;
    }
    return 0;
}
