/* pool.c: mn_parts_run on persistent worker threads.
 *
 * Creating and joining a thread costs 35-46 us on the 2-core VM of the README, and one map
 * build of 10^5 points runs about ten parallel steps (layout, keys, radix passes, checks,
 * walks), each once a thread: at that size the creations cost as much as the work. So the
 * parts of a step go to workers that stay: worker w runs part w + 1 of every step, the
 * caller part 0, as before. A step is handed over by bumping each taking worker's own
 * word, which it waits on (a short spin, then a futex), and the caller waits for a
 * pending count to reach zero the same way.
 *
 * One step at a time uses the pool; another caller at the same time (a second thread, or a
 * part that starts parallel work of its own) gets threads of its own as before, as does a
 * step of more parts than the pool has workers. A worker that cannot be started leaves its
 * parts to the caller, which runs them after its own. After fork the child has no workers:
 * it starts new ones when it needs them (a part must not fork and carry on in the child:
 * none of the library's do). Where the fork handler cannot be registered, every step gets
 * threads of its own.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "keys.h"

/* Workers at most (so steps of up to POOL_MAX + 1 parts use the pool). */
#define POOL_MAX 15
/* Polls of a word before sleeping on it: a pause takes 11.5 ns on the VM of the README, so
 * about 46 us here (up to about 200 us where a pause takes 140 cycles), about the gap
 * between the steps of one call, so back-to-back steps do not pay a wake-up. */
#define POOL_SPIN 4000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A word one thread waits on and another changes: the waiter polls it, then sleeps on it
 * (futex) with `sleeping` set, so the changer makes the wake-up call only when needed. */
typedef struct word {
    unsigned v;
    unsigned sleeping;
} __attribute__((aligned(64))) word; /* a cache line each: polled while others change */

static struct {
    pthread_mutex_t lock; /* held by the caller whose step the workers run */
    int nw;               /* workers started */
    bool off;             /* the fork handler could not be registered: no pool */
    /* the step: fn on the parts at P, `size` bytes apart */
    void *(*fn)(void *);
    char *P;
    size_t size;
    word go[POOL_MAX]; /* worker w's: bumped when it has part w + 1 of a new step */
    word pending;      /* parts handed to workers and not yet done */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static __thread bool in_worker;

/* Wait until w->v != val; returns the new value. */
static unsigned word_wait(word *w, unsigned val)
{
    unsigned v;
    for (int i = 0; i < POOL_SPIN; i++) {
        if ((v = __atomic_load_n(&w->v, __ATOMIC_ACQUIRE)) != val)
            return v;
        cpu_relax();
    }
    for (;;) {
        __atomic_store_n(&w->sleeping, 1, __ATOMIC_SEQ_CST);
        if ((v = __atomic_load_n(&w->v, __ATOMIC_SEQ_CST)) != val)
            break;
        syscall(SYS_futex, &w->v, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
    }
    __atomic_store_n(&w->sleeping, 0, __ATOMIC_RELAXED);
    return v;
}

/* w->v changed (by the caller, with release or stronger): wake its waiter if it sleeps. */
static void word_wake(word *w)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&w->sleeping, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &w->v, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg; /* runs part id of the steps it is handed */
    word *go = &pool.go[id - 1];
    in_worker = true;
    unsigned seen = 0; /* go is 0 until this worker exists (it may be 1 by now) */
    for (;;) {
        seen = word_wait(go, seen);
        /* The step cannot change before this part is done: the caller waits for it. */
        pool.fn(pool.P + (size_t)id * pool.size);
        if (__atomic_sub_fetch(&pool.pending.v, 1, __ATOMIC_ACQ_REL) == 0)
            word_wake(&pool.pending);
    }
    return NULL;
}

/* Workers 1 .. want, as many as can be started; how many there are. Caller holds the lock. */
static int pool_grow(int want)
{
    while (pool.nw < want) {
        pthread_attr_t a;
        pthread_t t;
        if (pthread_attr_init(&a) != 0)
            break;
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, worker, (void *)(intptr_t)(pool.nw + 1));
        pthread_attr_destroy(&a);
        if (rc != 0)
            break;
        pool.nw++;
    }
    return pool.nw;
}

static void after_fork_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pool.lock = fresh;
    pool.nw = 0;
    pool.pending = (word){0};
    for (int i = 0; i < POOL_MAX; i++)
        pool.go[i] = (word){0};
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0)
        pool.off = true; /* a child would wait for workers it does not have */
}

/* The step on threads of its own (created and joined here). */
static void run_own(char *p, size_t size, int nt, void *(*fn)(void *))
{
    pthread_t t[MN_RUN_MAX];
    bool started[MN_RUN_MAX] = {false};
    for (int i = 1; i < nt; i++)
        started[i] = pthread_create(&t[i], NULL, fn, p + (size_t)i * size) == 0;
    fn(p);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(t[i], NULL);
        else
            fn(p + (size_t)i * size); /* no thread: do its part here */
    }
}

void mn_parts_run(void *P, size_t size, int nt, void *(*fn)(void *))
{
    char *p = P;
    nt = nt < 1 ? 1 : nt > MN_RUN_MAX ? MN_RUN_MAX : nt;
    if (nt == 1) {
        fn(p);
        return;
    }
    if (in_worker || nt - 1 > POOL_MAX || pthread_mutex_trylock(&pool.lock) != 0) {
        run_own(p, size, nt, fn);
        return;
    }
    pthread_once(&atfork_once, atfork_register);
    if (pool.off) {
        pthread_mutex_unlock(&pool.lock);
        run_own(p, size, nt, fn);
        return;
    }
    int nw = pool_grow(nt - 1);
    int handed = nt - 1 < nw ? nt - 1 : nw; /* parts 1 .. handed go to workers */
    pool.fn = fn;
    pool.P = p;
    pool.size = size;
    __atomic_store_n(&pool.pending.v, (unsigned)handed, __ATOMIC_RELAXED);
    for (int w = 0; w < handed; w++) {
        __atomic_add_fetch(&pool.go[w].v, 1, __ATOMIC_RELEASE);
        word_wake(&pool.go[w]);
    }
    fn(p);
    for (int i = handed + 1; i < nt; i++) /* no worker: do its part here */
        fn(p + (size_t)i * size);
    unsigned left;
    while ((left = __atomic_load_n(&pool.pending.v, __ATOMIC_ACQUIRE)) != 0)
        word_wait(&pool.pending, left);
    pthread_mutex_unlock(&pool.lock);
}
