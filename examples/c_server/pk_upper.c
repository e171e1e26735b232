/* pk_upper.c - a pykernel server written in C: reads messages from its terminal "in",
 * upper-cases ASCII letters, and writes them to its terminal "out".
 *
 * It uses only the public C header (csrc/pykernel.h) and the kernel's environment:
 *   PYKERNEL_TERMINALS   JSON {terminal: {"pipe": NAME, "role": ..., ...}}
 *   PYKERNEL_NOTIFY_FD   where to write "READY=1\n" once both terminals are attached
 *   PYKERNEL_KERNEL_PID  the kernel: SIGTERM comes when it dies (PR_SET_PDEATHSIG)
 * SIGTERM/SIGINT stop it: it drains what is already queued, then exits 0.
 *
 * Build: cc -std=c11 -O2 -Icsrc examples/c_server/pk_upper.c csrc/pk_*.c -o pk-upper
 * (see examples/c_server/Makefile).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "pykernel.h"

#define POLL_NS 100000000LL /* how soon a stop request is noticed: 100 ms */
#define SEND_NS 500000000LL

static volatile sig_atomic_t stopping = 0;

static void on_stop(int sig) {
    (void)sig;
    stopping = 1;
}

/* ---- a minimal JSON walker: enough to find terminals[NAME].pipe, robust to key order ---- */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* p at '"'; returns the char after the closing quote, or NULL. */
static const char *skip_string(const char *p) {
    if (*p != '"') return NULL;
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!*++p) return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static const char *skip_value(const char *p, int depth) {
    p = ws(p);
    if (depth > 32) return NULL;
    if (*p == '"') return skip_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = skip_string(ws(p));
                if (!p) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            p = skip_value(p, depth + 1);
            if (!p) return NULL;
            p = ws(p);
            if (*p == ',') { p++; continue; }
            if (*p == close) return p + 1;
            return NULL;
        }
    }
    /* number, true, false, null */
    const char *start = p;
    while (*p && strchr(",}] \t\r\n", *p) == NULL) p++;
    return p == start ? NULL : p;
}

/* Does the string token at p (at '"') equal key exactly (no escapes in our keys)? */
static int key_is(const char *p, const char *key) {
    size_t n = strlen(key);
    return p[0] == '"' && strncmp(p + 1, key, n) == 0 && p[n + 1] == '"';
}

/* Walk object at p; for member `key`, return a pointer to its value (or NULL). */
static const char *member(const char *p, const char *key) {
    p = ws(p);
    if (*p != '{') return NULL;
    p = ws(p + 1);
    if (*p == '}') return NULL;
    for (;;) {
        const char *k = ws(p);
        const char *after = skip_string(k);
        if (!after) return NULL;
        p = ws(after);
        if (*p++ != ':') return NULL;
        p = ws(p);
        if (key_is(k, key)) return p;
        p = skip_value(p, 1);
        if (!p) return NULL;
        p = ws(p);
        if (*p == ',') { p = p + 1; continue; }
        return NULL;
    }
}

/* Copy PYKERNEL_TERMINALS[terminal].pipe into out; 0 on success, -1 if absent/null/bad. */
static int terminal_pipe(const char *json, const char *terminal, char *out, size_t cap) {
    const char *t = member(json, terminal);
    const char *v = t ? member(t, "pipe") : NULL;
    if (!v || *v != '"') return -1;
    const char *end = skip_string(v);
    if (!end) return -1;
    size_t n = (size_t)(end - v - 2);
    if (n == 0 || n >= cap || memchr(v + 1, '\\', n)) return -1;
    memcpy(out, v + 1, n);
    out[n] = '\0';
    return 0;
}

static int open_pipe(const char *terminal, const char *terms, pk_pipe **out) {
    char name[PK_NAME_MAX + 1], shm[PK_NAME_MAX + 16];
    if (terminal_pipe(terms, terminal, name, sizeof name) != 0) {
        fprintf(stderr, "pk-upper: PYKERNEL_TERMINALS has no connected terminal '%s'\n",
                terminal);
        return -1;
    }
    snprintf(shm, sizeof shm, "/pykernel.%s", name);
    int rc = pk_pipe_open(shm, out);
    if (rc < 0) {
        fprintf(stderr, "pk-upper: cannot open pipe %s for terminal '%s': %s\n", name,
                terminal, strerror(-rc));
        return -1;
    }
    return 0;
}

static void notify_ready(void) {
    const char *fd = getenv("PYKERNEL_NOTIFY_FD");
    if (fd && *fd) {
        const char line[] = "READY=1\n";
        if (write(atoi(fd), line, sizeof line - 1) < 0) perror("pk-upper: notify");
    }
}

static void upper(char *buf, uint32_t len) {
    for (uint32_t i = 0; i < len; i++)
        if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = (char)(buf[i] - 'a' + 'A');
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: waits return early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Die with the kernel: a SIGKILLed kernel must not leave its servers running. */
    const char *kernel = getenv("PYKERNEL_KERNEL_PID");
    if (kernel && prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && getppid() != atoi(kernel))
        stopping = 1; /* it died before we asked */

    const char *terms = getenv("PYKERNEL_TERMINALS");
    if (!terms) {
        fprintf(stderr, "pk-upper: PYKERNEL_TERMINALS is not set: run me with pykernel up\n");
        return 3;
    }
    pk_pipe *in = NULL, *out = NULL;
    pk_reader *r = NULL;
    pk_writer *w = NULL;
    if (open_pipe("in", terms, &in) < 0 || open_pipe("out", terms, &out) < 0) return 3;
    int rc = pk_reader_attach(in, &r);
    if (rc == 0) rc = pk_writer_attach(out, &w);
    if (rc < 0) {
        fprintf(stderr, "pk-upper: cannot attach: %s\n", strerror(-rc));
        return 1;
    }
    pk_pipe_info info;
    pk_pipe_info_get(in, &info);
    uint32_t cap = info.geometry.slot_size;
    char *buf = malloc(cap);
    if (!buf) return 1;
    notify_ready();

    unsigned long long passed = 0, dropped = 0;
    int status = 0;
    for (;;) {
        uint32_t len = 0;
        rc = pk_recv(r, buf, cap, &len, stopping ? 0 : POLL_NS);
        if (rc == 0 || rc == -EINTR || rc == -EPIPE) {
            if (stopping) break; /* stop requested and nothing left: done */
            if (rc == -EPIPE) { /* writer gone: it may be restarted */
                struct timespec pause = {0, POLL_NS};
                nanosleep(&pause, NULL);
            }
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "pk-upper: recv: %s\n", strerror(-rc));
            status = 1;
            break;
        }
        upper(buf, len);
        for (;;) {
            int s = pk_send(w, buf, len, SEND_NS);
            if (s == 1) { passed++; break; }
            if (s < 0 && s != -EINTR) {
                fprintf(stderr, "pk-upper: send: %s\n", strerror(-s));
                status = 1;
                goto done;
            }
            if (stopping) { dropped++; break; }
        }
    }
done:
    printf("pk-upper: passed %llu messages, dropped %llu\n", passed, dropped);
    fflush(stdout);
    pk_reader_detach(r);
    pk_writer_detach(w);
    pk_pipe_close(in);
    pk_pipe_close(out);
    free(buf);
    return status;
}
