/* test_pipe_tsan_stress.c - threads hammer one pipe through one shared mapping, under
 * ThreadSanitizer (tests/test_pipe_tsan.py builds and runs it). Also proves that an external
 * C program can use csrc/pykernel.h alone. Usage: stress NAME SHAPE (0 one, 1 mux, 2 comb).
 * Lossless only: lossy readers copy racily by design and validate with a seqlock. */
#define _GNU_SOURCE
#include "pykernel.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 20000, W = 4, R = 3 };
static const char *NAME;
static int shape;
static pk_pipe *shared; /* one mapping: ThreadSanitizer tracks memory by address */

typedef struct { int id; } arg_t;

static void *writer(void *a) {
    int id = ((arg_t *)a)->id;
    pk_writer *w;
    if (pk_writer_attach(shared, &w)) { fprintf(stderr, "attach w\n"); exit(2); }
    for (uint32_t i = 0; i < N; i++) {
        uint32_t msg[2] = {(uint32_t)id, i};
        uint32_t len = 8 + (i % 5) * 4;
        char buf[32] = {0};
        memcpy(buf, msg, 8);
        int rc;
        if (i % 3 == 0) {
            void *dst;
            rc = pk_reserve_try(w, &dst); /* as Python reserves: try, then the full call */
            if (rc == -EAGAIN)
                rc = pk_reserve(w, &dst, -1);
            if (rc == 1) { memcpy(dst, buf, len); rc = pk_commit(w, len); }
        } else if (i % 3 == 1) {
            rc = pk_send(w, buf, len, -1);
        } else { /* as Python sends: the non-waiting try, then the full call if it must wait */
            rc = pk_send_try(w, buf, len);
            if (rc == -EAGAIN)
                rc = pk_send(w, buf, len, -1);
        }
        if (rc != 1) { fprintf(stderr, "send rc %d\n", rc); exit(3); }
    }
    pk_writer_detach(w);
    return NULL;
}

static void *reader(void *a) {
    pk_reader *r;
    (void)a;
    if (pk_reader_attach(shared, &r)) { fprintf(stderr, "attach r\n"); exit(2); }
    int nw = shape == PK_SHAPE_COMBINER ? W : 1;
    uint32_t next[W] = {0};
    long total = 0;
    char buf[64]; uint32_t len;
    while (total < (long)nw * N) {
        int rc = 1;
        int64_t got = total % 3 == 1 ? pk_recv_try(r, buf, sizeof buf) : -EAGAIN; /* as Python */
        if (total % 3 == 2) { /* zero-copy, as Python views: try, then the full call */
            const void *data;
            rc = pk_view_try(r, &data, &len);
            if (rc == -EAGAIN)
                rc = pk_view(r, &data, &len, 5000000000LL);
            if (rc == 1) {
                memcpy(buf, data, len < sizeof buf ? len : sizeof buf);
                rc = pk_release(r);
            }
        } else if (got >= 0)
            len = (uint32_t)got;
        else if (got == -EAGAIN)
            rc = pk_recv(r, buf, sizeof buf, &len, 5000000000LL);
        else
            rc = (int)got;
        if (rc != 1) { fprintf(stderr, "recv rc %d after %ld\n", rc, total); exit(4); }
        uint32_t m[2]; memcpy(m, buf, 8);
        if (m[0] >= (uint32_t)nw || m[1] != next[m[0]]) { fprintf(stderr, "order %u %u\n", m[0], m[1]); exit(5); }
        next[m[0]]++; total++;
    }
    pk_reader_detach(r);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 64;
    NAME = argv[1];
    shape = atoi(argv[2]);
    pk_geometry g = {32, 8, (uint32_t)shape, 0, shape == PK_SHAPE_MULTIPLEXER ? R : 1,
                     shape == PK_SHAPE_COMBINER ? W : 1, UINT64_MAX - 100};
    pk_pipe *p;
    pk_pipe_unlink(NAME);
    if (pk_pipe_create(NAME, &g, 0600, &p)) return 1;
    shared = p;
    int nw = shape == PK_SHAPE_COMBINER ? W : 1, nr = shape == PK_SHAPE_MULTIPLEXER ? R : 1;
    pthread_t t[W + R]; arg_t args[W];
    for (int i = 0; i < nr; i++) pthread_create(&t[W + i], NULL, reader, NULL);
    /* readers must be attached before the writer starts in a multiplexer */
    pk_stats st; 
    for (;;) { pk_reader_stats rs[R]; pk_pipe_stats(p, &st, rs, R, NULL, 0); int n = 0;
               for (uint32_t i = 0; i < st.readers; i++) n += rs[i].pid > 0; if (n == nr) break; }
    for (int i = 0; i < nw; i++) { args[i].id = i; pthread_create(&t[i], NULL, writer, &args[i]); }
    for (int i = 0; i < nw; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < nr; i++) pthread_join(t[W + i], NULL);
    pk_pipe_close(p); pk_pipe_unlink(NAME);
    puts("ok");
    return 0;
}
