/* dnnfusion's thread pool: one per process, shared by every compiled model (built once as a small shared library
   that model libraries link against).

   A parallel loop of n iterations is cut into pieces; the calling thread and up to team - 1 helper threads claim
   pieces one at a time with a compare-and-swap on a ticket (generation << 32 | next piece), so a helper that lost
   its core to another process never holds up the loop: whoever runs claims the remaining pieces, and the caller
   waits only for pieces already claimed. Helpers spin a bounded time for the next loop (kernels of one inference
   follow each other within microseconds), then sleep on a futex; `df_pool_rest` sends them to sleep at once (a
   model's entry calls it before returning, so nothing spins between inferences). A caller that finds the pool
   busy with another caller's loop (two models, or two threads, running at once) runs its loop alone rather than
   oversubscribing the cores. Linux only (futex). */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

typedef void (*df_task)(const void* ctx, int64_t lo, int64_t hi);

#define DF_MAX_HELPERS 255
#define DF_PIECES_PER_THREAD 4

static struct {
    /* the loop being run */
    df_task fn;
    const void* ctx;
    int64_t n;
    int64_t pieces;
    int team;
    _Atomic uint64_t ticket;          /* generation << 32 | next unclaimed piece */
    _Atomic int64_t done;             /* pieces finished in this generation */
    /* helpers */
    pthread_mutex_t grow;             /* held while helpers are created */
    atomic_flag busy;                 /* one loop at a time */
    _Atomic int helpers;
    _Atomic int sleepers;
    _Atomic uint32_t wake;            /* futex word: bumped to wake sleepers */
    _Atomic int rest;                 /* helpers sleep without spinning */
    int64_t spin_ns;
} df_pool = {.grow = PTHREAD_MUTEX_INITIALIZER, .busy = ATOMIC_FLAG_INIT, .spin_ns = -1};

static inline void df_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t df_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t df_spin_ns(void) {
    if (df_pool.spin_ns < 0) {
        const char* text = getenv("DNNFUSION_SPIN_US");
        df_pool.spin_ns = text ? (int64_t)atol(text) * 1000 : 50000;
    }
    return df_pool.spin_ns;
}

/* Claim and run pieces of generation `gen` until none is left. */
static void df_work(uint32_t gen) {
    for (;;) {
        uint64_t t = atomic_load_explicit(&df_pool.ticket, memory_order_acquire);
        if ((uint32_t)(t >> 32) != gen) return;
        const int64_t piece = (int64_t)(uint32_t)t, pieces = df_pool.pieces;
        if (piece >= pieces) return;
        const df_task fn = df_pool.fn;
        const void* ctx = df_pool.ctx;
        const int64_t n = df_pool.n;
        if (!atomic_compare_exchange_weak_explicit(&df_pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        fn(ctx, piece * n / pieces, (piece + 1) * n / pieces);
        atomic_fetch_add_explicit(&df_pool.done, 1, memory_order_release);
    }
}

static void* df_helper(void* arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = (uint32_t)(atomic_load(&df_pool.ticket) >> 32);
    for (;;) {
        const int64_t until = df_now_ns() + df_spin_ns();
        int spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load_explicit(&df_pool.ticket, memory_order_acquire) >> 32)) == seen) {
            if (atomic_load_explicit(&df_pool.rest, memory_order_relaxed) || (++spins % 64 == 0 && df_now_ns() > until)) {
                atomic_fetch_add(&df_pool.sleepers, 1);
                const uint32_t word = atomic_load(&df_pool.wake);
                if ((uint32_t)(atomic_load(&df_pool.ticket) >> 32) == seen)
                    syscall(SYS_futex, &df_pool.wake, FUTEX_WAIT_PRIVATE, word, NULL, NULL, 0);
                atomic_fetch_sub(&df_pool.sleepers, 1);
                spins = 0;
            } else {
                df_relax();
            }
        }
        seen = gen;
        if (index < df_pool.team - 1) df_work(gen);
    }
    return NULL;
}

/* Wake the helpers sleeping on the futex, if any. */
static void df_wake_sleepers(void) {
    if (atomic_load(&df_pool.sleepers) > 0) {
        atomic_fetch_add(&df_pool.wake, 1);
        syscall(SYS_futex, &df_pool.wake, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}

/* Make sure `count` helpers exist (never fewer than before; creation failures leave fewer, which is still correct). */
static void df_grow(int count) {
    if (count > DF_MAX_HELPERS) count = DF_MAX_HELPERS;
    if (atomic_load(&df_pool.helpers) >= count) return;
    pthread_mutex_lock(&df_pool.grow);
    for (int k = atomic_load(&df_pool.helpers); k < count; ++k) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8u << 20);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attr, df_helper, (void*)(intptr_t)k);
        pthread_attr_destroy(&attr);
        if (failed) break;
        atomic_fetch_add(&df_pool.helpers, 1);
    }
    pthread_mutex_unlock(&df_pool.grow);
}

/* Run fn(ctx, lo, hi) over 0 <= i < n in pieces on the caller and up to team - 1 helpers; returns when all ran. */
void df_parallel(df_task fn, const void* ctx, int64_t n, int team) {
    if (n <= 0) return;
    if (team > n) team = (int)n;
    if (team <= 1 || atomic_flag_test_and_set_explicit(&df_pool.busy, memory_order_acquire)) {
        fn(ctx, 0, n);
        return;
    }
    df_grow(team - 1);
    const int helpers = atomic_load(&df_pool.helpers);
    if (team - 1 > helpers) team = helpers + 1;
    int64_t pieces = (int64_t)team * DF_PIECES_PER_THREAD;
    if (pieces > n) pieces = n;
    df_pool.fn = fn;
    df_pool.ctx = ctx;
    df_pool.n = n;
    df_pool.pieces = pieces;
    df_pool.team = team;
    atomic_store_explicit(&df_pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&df_pool.rest, 0, memory_order_relaxed);
    const uint32_t gen = (uint32_t)(atomic_load(&df_pool.ticket) >> 32) + 1;
    atomic_store(&df_pool.ticket, (uint64_t)gen << 32);
    df_wake_sleepers();
    df_work(gen);
    for (int spins = 0; atomic_load_explicit(&df_pool.done, memory_order_acquire) < pieces; ++spins) {
        if (spins < 4096) df_relax();
        else sched_yield();
    }
    atomic_flag_clear_explicit(&df_pool.busy, memory_order_release);
}

/* Send the helpers to sleep now instead of after their spin (a model's entry calls this before returning). */
void df_pool_rest(void) {
    atomic_store_explicit(&df_pool.rest, 1, memory_order_relaxed);
}

/* Wake the sleeping helpers ahead of a model's first loop: they spin for it as between loops (then sleep again), so
   a caller that wakes them before preparing its inputs overlaps their wake-up with that work instead of paying it
   in the first kernel, which the caller would otherwise mostly run alone. */
void df_pool_wake(void) {
    atomic_store_explicit(&df_pool.rest, 0, memory_order_relaxed);
    df_wake_sleepers();
}

/* How many helper threads exist (for tests and reports). */
int df_pool_helpers(void) {
    return atomic_load(&df_pool.helpers);
}
