/* pk_wait.c - spin briefly, then sleep on a futex word in the shared mapping.
 *
 * No lost wake-ups, by a Dekker pair of sequentially consistent operations on a "someone
 * may sleep" flag (the `waiters` word: 0 or 1):
 *   sleeper: read word -> check condition -> flag = 1 (seq_cst) -> fence -> check condition
 *            again -> FUTEX_WAIT(word, value read first)
 *   waker:   publish (release) -> fence -> if flag: exchange(flag, 0) and, if it was 1,
 *            word++ then FUTEX_WAKE(all)
 * Either the sleeper's second check sees the publication, or the waker sees the flag and
 * changes the word, so FUTEX_WAIT returns EAGAIN or is woken. The waker that clears the
 * flag wakes every sleeper, so the wakers after it skip the syscall until someone sleeps
 * again: one FUTEX_WAKE per sleep, not one per message while a woken peer is still being
 * scheduled. A flag left set by a sleeper that timed out only costs one spare syscall.
 * Sleeps are also bounded by PK_TICK_NS, when tick() checks that the peer is still alive:
 * a dead peer never wakes us.
 * A signal that interrupts the sleep returns -EINTR (call again), so an embedding runtime
 * such as Python can run its handlers (Ctrl-C) between calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pk_layout.h"

int64_t pk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* 0 woken (or the word changed: EAGAIN), ETIMEDOUT or EINTR. */
static int futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL, 0);
    return rc == 0 || errno == EAGAIN ? 0 : errno;
}

void pk_wake(_Atomic uint32_t *word, _Atomic uint32_t *waiters)
{
    /* Pairs with the sleeper's flag store + fence then re-check: our publication (already
     * stored) is ordered before this load of the flag. A plain load first keeps the line
     * shared while nobody sleeps. */
    pk_fence_sc();
    if (pk_ld_rlx(waiters) == 0)
        return;
    if (atomic_exchange_explicit(waiters, 0, memory_order_acq_rel) == 0)
        return; /* another waker took the flag, and with it the duty to wake */
    /* The increment changes the value a sleeper is about to FUTEX_WAIT on (EAGAIN). */
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int pk_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, pk_cond_fn cond, pk_cond_fn tick,
            void *ctx, int64_t timeout_ns, uint32_t spin_ns, _Atomic uint64_t *wait_count,
            uint64_t *late, int64_t *tick_at)
{
    int rc = cond(ctx);
    if (rc != 0)
        return rc;
    int64_t now = pk_now_ns();
    if (timeout_ns == 0) {
        /* Non-blocking calls also check peers now and then, so a poller learns that its
         * peer died (and a dead multiplexer reader stops holding the ring). */
        if (now < *tick_at)
            return 0;
        *tick_at = now + PK_TICK_NS;
        rc = tick(ctx);
        return rc != 0 ? rc : cond(ctx);
    }
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : now + timeout_ns;
    int64_t spin_end = now + (int64_t)spin_ns;
    if (spin_end > deadline)
        spin_end = deadline;
    /* Spin phase: short, since this may be a 2-core machine; the clock is read only every
     * 64 polls (vDSO, ~20 ns). */
    for (uint32_t i = 1;; i++) {
        pk_cpu_relax();
        rc = cond(ctx);
        if (rc != 0)
            return rc;
        if ((i & 63) == 0 && pk_now_ns() >= spin_end)
            break;
    }
    if (wait_count)
        pk_own_add(wait_count, 1);
    for (;;) {
        now = pk_now_ns();
        if (now >= *tick_at) { /* at most every PK_TICK_NS per handle, sleeping or polling */
            *tick_at = now + PK_TICK_NS;
            rc = tick(ctx);
            if (rc != 0)
                return rc;
        }
        int64_t next_tick = *tick_at;
        uint32_t seen = pk_ld_acq(word); /* pairs with the waker's release increment */
        rc = cond(ctx);
        if (rc != 0 || now >= deadline)
            return rc;
        atomic_store_explicit(waiters, 1, memory_order_seq_cst); /* Dekker: see top */
        pk_fence_sc(); /* pairs with pk_wake's fence: the re-check below sees its publication */
        rc = cond(ctx);
        if (rc == 0) {
            int64_t until = next_tick < deadline ? next_tick : deadline;
            /* A sleep that ran out its time while the condition held and nobody bumped the
             * word: whoever made it hold skipped the wake (Dekker broken). Counted for the
             * tests; a wake that merely raced the timer did bump the word. */
            int e = futex_wait(word, seen, until > now ? until - now : 1);
            /* word acquire pairs with the waker's release increment */
            if (e == ETIMEDOUT && late && pk_ld_acq(word) == seen && cond(ctx))
                (*late)++;
            else if (e == EINTR)
                rc = cond(ctx) ? 1 : -EINTR; /* let the caller run its signal handlers */
        }
        if (rc != 0)
            return rc; /* the flag stays: a waker clears it (one spare syscall at most) */
    }
}
