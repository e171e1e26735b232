/* pk_atomic.h - every memory-ordering primitive the core uses, in one place.
 *
 * The call sites say what each access pairs with; this header only names the orders so
 * that a reader can grep for them. C11 <stdatomic.h> only, never `volatile`.
 *
 *   pk_ld_acq / pk_st_rel   a publish/consume pair (message, cursor, record ownership)
 *   pk_ld_rlx / pk_st_rlx   a counter owned by one side, read for statistics only
 *   pk_fence_sc             store->load ordering (Dekker): "I published, is anyone asleep?"
 *                           against "I am going to sleep, is anything published?"
 *   pk_fence_acq/rel        seqlock fences around an unprotected memcpy (lossy mode)
 */
#ifndef PK_ATOMIC_H
#define PK_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

#define pk_ld_acq(p) atomic_load_explicit((p), memory_order_acquire)
#define pk_ld_rlx(p) atomic_load_explicit((p), memory_order_relaxed)
#define pk_st_rel(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define pk_st_rlx(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define pk_fence_sc() atomic_thread_fence(memory_order_seq_cst)
#define pk_fence_acq() atomic_thread_fence(memory_order_acquire)
#define pk_fence_rel() atomic_thread_fence(memory_order_release)

/* A counter owned by exactly one process: a plain load + store is enough (no RMW), the
 * relaxed store only keeps concurrent statistics readers free of torn values. */
#define pk_own_add(p, v) pk_st_rlx((p), pk_ld_rlx(p) + (v))

/* Free-running 64-bit positions: "a is before b" survives wrap-around at 2^64 as long as
 * the two are less than 2^63 apart, which a ring of at most 2^31 slots guarantees. */
static inline int64_t pk_diff(uint64_t a, uint64_t b) { return (int64_t)(a - b); }

static inline void pk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* PK_ATOMIC_H */
