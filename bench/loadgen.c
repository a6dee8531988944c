/*
 * loadgen.c: a closed-loop memcached load generator for memrelay's benchmarks (bench/run.py).
 *
 * Each of -c connections keeps -p requests outstanding: when one completes, the next is sent at once.
 * Latency is the time from queueing a request for its socket to the last byte of its reply, so it is the
 * service time at that concurrency (a closed loop: no coordinated-omission correction). Requests are
 * `get` (one key, or -m keys in one command) and `set`, mixed in the -r GET:SET ratio, over -k keys
 * named PREFIX<n> with -v byte values. A value starts with its key's number, so every reply is checked:
 * a VALUE must be for a key asked for, in the order asked, with the length and content stored. Misses
 * and error replies (SERVER_ERROR, CLIENT_ERROR, ERROR, NOT_STORED, ...) are counted; any other reply
 * is malformed and stops the run with exit status 2, as does a server closing a connection.
 *
 * With several -s servers loadgen plays a client library talking to memcached directly: every
 * connection holds one socket per server, a key lives on server fnv1a_32(key) % nservers (plain
 * client-side modula, not ketama), and a multi-get becomes one `get` per server involved, complete when
 * the last of them is.
 *
 * Before measuring, the warm-up sets every key once (all connections, 16 requests deep) unless
 * --no-warmup. The measured window starts when every thread has finished warming up and ends after -d
 * seconds (or -n requests). --watch-pid PID reads that process's CPU time (utime + stime from
 * /proc/PID/stat) at the window's two ends, so a proxy's CPU per request covers exactly the requests
 * counted.
 *
 * Output: one JSON line on stdout (see print_result()); diagnostics go to stderr.
 */
#include "hdr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_SERVERS = 64,      /* -s entries */
    MAX_MGET = 1000,       /* keys in one get */
    MAX_WATCH = 16,        /* --watch-pid entries */
    MAX_PREFIX = 32,       /* bytes of the key prefix */
    KEY_BUF = 48,          /* a formatted key: prefix + up to 10 digits */
    VALUE_HDR = 11,        /* "%010u:" at the start of every value of 11 bytes or more */
    WARM_DEPTH = 16,       /* sets in flight per connection during the warm-up */
    REPLY_LINE_MAX = 8192, /* a reply line longer than this is malformed */
    IN_CHUNK = 16384,      /* free input space asked of every read */
    WARM_TIMEOUT_S = 300,  /* a warm-up taking longer than this fails the run */
};

enum { EXIT_USAGE = 1, EXIT_BAD_REPLY = 2 };

/* ---- options: set by main() before any thread starts, read-only afterwards ---------------------- */

struct options {
    struct sockaddr_in addr[MAX_SERVERS]; /* servers, in -s order */
    char name[MAX_SERVERS][64];           /* their host:port text */
    int nservers;
    int conns;           /* logical connections (each one socket per server) */
    int depth;           /* requests outstanding per connection */
    int threads;         /* worker threads, each with its own loop and share of connections */
    double duration;     /* measured seconds (a bound even with -n) */
    uint64_t requests;   /* -n: stop after this many requests (0: run for the duration) */
    uint32_t keyspace;   /* keys PREFIX0 .. PREFIX<keyspace-1> */
    uint32_t value_size; /* bytes per value */
    uint32_t get_weight; /* -r GET:SET */
    uint32_t set_weight;
    uint32_t mget;    /* keys per get */
    bool warmup;      /* set every key before measuring */
    bool warmup_only; /* set every key, then exit */
    char prefix[MAX_PREFIX + 1];
    size_t prefix_len;
    pid_t watch[MAX_WATCH]; /* processes whose CPU time is reported */
    int nwatch;
    const char *label; /* copied into the JSON line */
    bool binary;       /* memcached's binary protocol: SET, GETK (one key) or GETKQ... NOOP (several) */
};

static struct options opt;
static char *pattern;       /* value bytes after the key number, the same for every key */
static uint8_t *key_server; /* key number -> server index (modula over fnv1a_32 of the key) */

/* ---- shared run state: written by main() between barriers, read by workers after them ------------ */

static pthread_barrier_t warmed; /* every worker has warmed up; main then samples CPU and the clock */
static pthread_barrier_t go;     /* main has sampled; workers start the measured window */
static uint64_t window_start_ns; /* written by main before `go` */

/* ---- per-worker structures ---------------------------------------------------------------------- */

/* One request's share on one socket: the keys it asked that server for. Sockets pair replies with
 * parts FIFO. */
struct part {
    uint32_t slot;    /* the request's index in its connection's reqs[] */
    uint32_t key_off; /* its keys are reqs[slot].keys[key_off .. key_off + key_cnt) */
    uint32_t key_cnt;
    bool is_set;
};

/* A logical request in flight: one get (of one or more keys) or one set. */
struct req {
    uint64_t start_ns; /* when it was queued for writing */
    uint32_t *keys;    /* key numbers, grouped by server in the order sent (opt.mget entries) */
    uint32_t nkeys;
    uint32_t parts_left; /* parts not answered yet */
    uint32_t hits;       /* VALUEs received so far */
    uint32_t errors;     /* parts answered with an error */
    uint32_t error_keys; /* keys of those parts (neither hits nor misses) */
    bool is_set;
    bool measured; /* issued inside the measured window: its reply counts */
};

struct conn;

/* One TCP connection to one server. */
struct sock {
    ev_io rio, wio; /* read watcher (always on), write watcher (on while output is blocked) */
    int fd;
    int server; /* index into opt.addr */
    struct conn *conn;
    char *out; /* bytes to send: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
    char *in; /* bytes received, not parsed yet: in[in_off .. in_len) */
    size_t in_off, in_len, in_cap;
    size_t need;       /* bytes of the element being received, when more than in_len - in_off */
    struct part *fifo; /* parts waiting for their reply, oldest at fifo_head */
    uint32_t fifo_head, fifo_count, fifo_cap;
    uint32_t cursor; /* head part: its keys before this index were answered or missed */
    uint32_t hits;   /* head part: VALUEs received */
};

/* A logical connection: what one client of the proxy (or of the pool directly) does. */
struct conn {
    struct worker *w;
    struct sock *socks;  /* one per server */
    struct req *reqs;    /* request slots */
    uint32_t *free_slot; /* stack of free slot indexes */
    uint32_t nfree;
    uint32_t cap; /* slots: max(depth, WARM_DEPTH) */
    uint32_t outstanding;
    uint32_t warm_next, warm_end; /* keys this connection sets in the warm-up */
    bool warm_done;
    uint64_t measured; /* requests it completed in the measured window: how fairly it was served */
};

struct counters {
    uint64_t requests, gets, sets; /* measured requests completed */
    uint64_t keys;                 /* keys asked for by measured gets */
    uint64_t hits, misses;         /* of those keys */
    uint64_t errors;               /* error replies to measured requests (one per server part) */
    uint64_t warm_sets, warm_errors;
};

enum phase { PHASE_WARM, PHASE_WAIT, PHASE_RUN, PHASE_STOP };

struct worker {
    int id;
    pthread_t tid;
    struct ev_loop *loop;
    struct conn *conns;
    uint32_t nconns;
    enum phase phase;
    uint32_t warm_pending; /* connections still warming up */
    uint64_t quota;        /* -n share: requests to issue in the window (0: unbounded) */
    uint64_t issued;       /* requests issued in the window */
    uint64_t end_ns;       /* when the window closed for this worker */
    ev_timer timer;        /* the warm-up's time limit, then the window's end */
    uint64_t rng;          /* xorshift64* state */
    uint32_t *scratch;     /* opt.mget key numbers before grouping by server */
    struct counters c;
    struct hdr hist; /* latency of measured requests, ns */
};

/* ---- small helpers ------------------------------------------------------------------------------- */

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        die(EXIT_USAGE, "out of memory (%zu bytes)", n);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        die(EXIT_USAGE, "out of memory (%zu bytes)", n);
    }
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(struct worker *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* A uniform number in [0, n). */
static uint32_t rng_below(struct worker *w, uint32_t n)
{
    return (uint32_t)(((rng_next(w) >> 32) * (uint64_t)n) >> 32);
}

/* Writes the decimal digits of v at dst; returns their count. */
static size_t put_u32(char *dst, uint32_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) {
        dst[i] = tmp[n - 1 - i];
    }
    return n;
}

static size_t key_format(char *dst, uint32_t k)
{
    memcpy(dst, opt.prefix, opt.prefix_len);
    return opt.prefix_len + put_u32(dst + opt.prefix_len, k);
}

static uint32_t fnv1a_32(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* The first VALUE_HDR bytes of key k's value: its number in 10 digits and a colon. */
static void value_head(char *dst, uint32_t k)
{
    for (int i = 9; i >= 0; i--) {
        dst[i] = (char)('0' + k % 10);
        k /= 10;
    }
    dst[10] = ':';
}

/* The value stored under key k: value_head() then the shared pattern (just the pattern if shorter). */
static void value_format(char *dst, uint32_t k)
{
    if (opt.value_size >= VALUE_HDR) {
        value_head(dst, k);
        memcpy(dst + VALUE_HDR, pattern, opt.value_size - VALUE_HDR);
    } else {
        memcpy(dst, pattern, opt.value_size);
    }
}

static bool value_matches(const char *v, uint32_t k)
{
    if (opt.value_size < VALUE_HDR) {
        return memcmp(v, pattern, opt.value_size) == 0;
    }
    char head[VALUE_HDR];
    value_head(head, k);
    return memcmp(v, head, VALUE_HDR) == 0 && memcmp(v + VALUE_HDR, pattern, opt.value_size - VALUE_HDR) == 0;
}

/* ---- malformed replies ---------------------------------------------------------------------------- */

static void bad_reply(const struct sock *s, const char *p, size_t n, const char *why)
    __attribute__((noreturn));

static void bad_reply(const struct sock *s, const char *p, size_t n, const char *why)
{
    char shown[256];
    size_t o = 0;
    for (size_t i = 0; i < n && i < 60; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r') {
            o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\r");
        } else if (ch == '\n') {
            o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\n");
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
        } else {
            shown[o++] = (char)ch;
        }
    }
    shown[o] = '\0';
    die(EXIT_BAD_REPLY, "malformed reply from %s: %s: \"%s\"%s", opt.name[s->server], why, shown,
        n > 60 ? "..." : "");
}

/* ---- output --------------------------------------------------------------------------------------- */

/* Room for n more bytes at s->out + s->out_len. */
static char *out_reserve(struct sock *s, size_t n)
{
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
    }
    if (s->out_len + n > s->out_cap) {
        if (s->out_off > 0) {
            memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
            s->out_len -= s->out_off;
            s->out_off = 0;
        }
        if (s->out_len + n > s->out_cap) {
            size_t cap = s->out_cap ? s->out_cap : 4096;
            while (cap < s->out_len + n) {
                cap *= 2;
            }
            s->out = xrealloc(s->out, cap);
            s->out_cap = cap;
        }
    }
    return s->out + s->out_len;
}

/* Writes what it can; arms the write watcher when the socket is full. */
static void sock_flush(struct sock *s)
{
    while (s->out_off < s->out_len) {
        ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(s->conn->w->loop, &s->wio);
                return;
            }
            die(EXIT_BAD_REPLY, "send to %s: %s", opt.name[s->server], strerror(errno));
        }
        s->out_off += (size_t)n;
    }
    s->out_off = s->out_len = 0;
    ev_io_stop(s->conn->w->loop, &s->wio);
}

static void conn_flush(struct conn *c)
{
    for (int i = 0; i < opt.nservers; i++) {
        if (c->socks[i].out_len > c->socks[i].out_off) {
            sock_flush(&c->socks[i]);
        }
    }
}

static void sock_add_part(struct sock *s, uint32_t slot, uint32_t key_off, uint32_t key_cnt, bool is_set)
{
    if (s->fifo_count == s->fifo_cap) {
        die(EXIT_USAGE, "internal error: reply queue overflow");
    }
    struct part *p = &s->fifo[(s->fifo_head + s->fifo_count) % s->fifo_cap];
    p->slot = slot;
    p->key_off = key_off;
    p->key_cnt = key_cnt;
    p->is_set = is_set;
    s->fifo_count++;
}

/* ---- the binary protocol (--binary) ---- */

enum { BIN_HDR = 24, BIN_SET = 0x01, BIN_NOOP = 0x0a, BIN_GETK = 0x0c, BIN_GETKQ = 0x0d };

static void bin_header(char *p, uint8_t opcode, uint16_t keylen, uint8_t extlen, uint32_t bodylen)
{
    memset(p, 0, BIN_HDR);
    p[0] = (char)0x80;
    p[1] = (char)opcode;
    p[2] = (char)(keylen >> 8);
    p[3] = (char)keylen;
    p[4] = (char)extlen;
    p[8] = (char)(bodylen >> 24);
    p[9] = (char)(bodylen >> 16);
    p[10] = (char)(bodylen >> 8);
    p[11] = (char)bodylen;
}

static void bin_queue_set(struct sock *s, uint32_t slot, uint32_t k)
{
    char *o = out_reserve(s, BIN_HDR + 8 + KEY_BUF + opt.value_size);
    size_t kl = key_format(o + BIN_HDR + 8, k);
    bin_header(o, BIN_SET, (uint16_t)kl, 8, (uint32_t)(8 + kl + opt.value_size));
    memset(o + BIN_HDR, 0, 8); /* flags 0, exptime 0 */
    value_format(o + BIN_HDR + 8 + kl, k);
    s->out_len += BIN_HDR + 8 + kl + opt.value_size;
    sock_add_part(s, slot, 0, 1, true);
}

/* One key: GETK. Several: GETKQ each (misses are silent), then NOOP ends the part. */
static void bin_queue_get(struct sock *s, uint32_t slot, const uint32_t *keys, uint32_t off, uint32_t cnt)
{
    char *o = out_reserve(s, (size_t)cnt * (BIN_HDR + KEY_BUF) + BIN_HDR);
    char *p = o;
    for (uint32_t i = 0; i < cnt; i++) {
        size_t kl = key_format(p + BIN_HDR, keys[off + i]);
        bin_header(p, cnt == 1 ? BIN_GETK : BIN_GETKQ, (uint16_t)kl, 0, (uint32_t)kl);
        p += BIN_HDR + kl;
    }
    if (cnt > 1) {
        bin_header(p, BIN_NOOP, 0, 0, 0);
        p += BIN_HDR;
    }
    s->out_len += (size_t)(p - o);
    sock_add_part(s, slot, off, cnt, false);
}

static void queue_set(struct sock *s, uint32_t slot, uint32_t k)
{
    if (opt.binary) {
        bin_queue_set(s, slot, k);
        return;
    }
    /* "set " key " 0 0 " len "\r\n" value "\r\n" */
    char *o = out_reserve(s, 4 + KEY_BUF + 5 + 10 + 2 + opt.value_size + 2);
    char *p = o;
    memcpy(p, "set ", 4);
    p += 4;
    p += key_format(p, k);
    memcpy(p, " 0 0 ", 5);
    p += 5;
    p += put_u32(p, opt.value_size);
    memcpy(p, "\r\n", 2);
    p += 2;
    value_format(p, k);
    p += opt.value_size;
    memcpy(p, "\r\n", 2);
    p += 2;
    s->out_len += (size_t)(p - o);
    sock_add_part(s, slot, 0, 1, true);
}

static void queue_get(struct sock *s, uint32_t slot, const uint32_t *keys, uint32_t off, uint32_t cnt)
{
    if (opt.binary) {
        bin_queue_get(s, slot, keys, off, cnt);
        return;
    }
    char *o = out_reserve(s, 3 + (size_t)cnt * (1 + KEY_BUF) + 2);
    char *p = o;
    memcpy(p, "get", 3);
    p += 3;
    for (uint32_t i = 0; i < cnt; i++) {
        *p++ = ' ';
        p += key_format(p, keys[off + i]);
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    s->out_len += (size_t)(p - o);
    sock_add_part(s, slot, off, cnt, false);
}

/* ---- issuing requests ----------------------------------------------------------------------------- */

/* Picks opt.mget distinct keys into w->scratch. */
static void pick_keys(struct worker *w)
{
    for (uint32_t i = 0; i < opt.mget; i++) {
        uint32_t k;
        bool dup;
        do {
            k = rng_below(w, opt.keyspace);
            dup = false;
            for (uint32_t j = 0; j < i; j++) {
                if (w->scratch[j] == k) {
                    dup = true;
                    break;
                }
            }
        } while (dup);
        w->scratch[i] = k;
    }
}

/* Sends one request on c: a warm-up set of the next key, or a random get or set. */
static void conn_issue(struct conn *c, bool warm)
{
    struct worker *w = c->w;
    uint32_t slot = c->free_slot[--c->nfree];
    struct req *r = &c->reqs[slot];
    r->measured = w->phase == PHASE_RUN;
    r->hits = r->errors = r->error_keys = 0;
    r->start_ns = now_ns();
    c->outstanding++;

    if (warm || (opt.set_weight && rng_below(w, opt.get_weight + opt.set_weight) < opt.set_weight)) {
        uint32_t k = warm ? c->warm_next++ : rng_below(w, opt.keyspace);
        r->is_set = true;
        r->nkeys = 1;
        r->keys[0] = k;
        r->parts_left = 1;
        queue_set(&c->socks[key_server[k]], slot, k);
        return;
    }

    r->is_set = false;
    r->nkeys = opt.mget;
    r->parts_left = 0;
    if (opt.mget == 1) {
        uint32_t k = rng_below(w, opt.keyspace);
        r->keys[0] = k;
        r->parts_left = 1;
        queue_get(&c->socks[key_server[k]], slot, r->keys, 0, 1);
        return;
    }
    pick_keys(w);
    uint32_t n = 0;
    for (int s = 0; s < opt.nservers; s++) {
        uint32_t off = n;
        for (uint32_t i = 0; i < opt.mget; i++) {
            if (key_server[w->scratch[i]] == s) {
                r->keys[n++] = w->scratch[i];
            }
        }
        if (n > off) {
            r->parts_left++;
            queue_get(&c->socks[s], slot, r->keys, off, n - off);
        }
    }
}

static void worker_stop(struct worker *w)
{
    w->end_ns = now_ns();
    w->phase = PHASE_STOP;
    ev_break(w->loop, EVBREAK_ALL);
}

/* Tops c up to its depth (or its warm-up share) and writes what was queued. */
static void conn_fill(struct conn *c)
{
    struct worker *w = c->w;
    if (w->phase == PHASE_WARM) {
        while (c->outstanding < c->cap && c->warm_next < c->warm_end) {
            conn_issue(c, true);
        }
        if (!c->warm_done && c->warm_next == c->warm_end && c->outstanding == 0) {
            c->warm_done = true;
            if (--w->warm_pending == 0) {
                ev_break(w->loop, EVBREAK_ALL);
            }
        }
    } else if (w->phase == PHASE_RUN) {
        while (c->outstanding < (uint32_t)opt.depth && (w->quota == 0 || w->issued < w->quota)) {
            w->issued++;
            conn_issue(c, false);
        }
    }
    conn_flush(c);
}

/* ---- replies -------------------------------------------------------------------------------------- */

/* Request slot of c is complete: count it if it was measured and the window is still open. */
static void req_done(struct conn *c, uint32_t slot)
{
    struct worker *w = c->w;
    struct req *r = &c->reqs[slot];
    c->outstanding--;
    c->free_slot[c->nfree++] = slot;
    if (!r->measured) {
        if (r->errors) {
            w->c.warm_errors++;
        } else {
            w->c.warm_sets++;
        }
        return;
    }
    if (w->phase != PHASE_RUN) {
        return;
    }
    hdr_record(&w->hist, now_ns() - r->start_ns);
    w->c.requests++;
    c->measured++;
    w->c.errors += r->errors;
    if (r->is_set) {
        w->c.sets++;
    } else {
        w->c.gets++;
        w->c.keys += r->nkeys;
        w->c.hits += r->hits;
        w->c.misses += r->nkeys - r->hits - r->error_keys;
    }
    if (w->quota && w->c.requests == w->quota) {
        worker_stop(w);
    }
}

/* The head part of s is answered (with an error reply if error). */
static void part_done(struct sock *s, bool error)
{
    struct part *p = &s->fifo[s->fifo_head];
    struct conn *c = s->conn;
    struct req *r = &c->reqs[p->slot];
    if (error) {
        r->errors++;
        r->error_keys += p->is_set ? 0 : p->key_cnt;
    } else if (!p->is_set) {
        r->hits += s->hits;
    }
    uint32_t slot = p->slot;
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_count--;
    s->cursor = 0;
    s->hits = 0;
    if (--r->parts_left == 0) {
        req_done(c, slot);
    }
}

static bool line_is(const char *p, size_t n, const char *word)
{
    size_t wn = strlen(word);
    return n == wn && memcmp(p, word, wn) == 0;
}

static bool line_starts(const char *p, size_t n, const char *word)
{
    size_t wn = strlen(word);
    return n >= wn && memcmp(p, word, wn) == 0;
}

/* memcached's generic error lines, valid in reply to anything. */
static bool is_error_line(const char *p, size_t n)
{
    return line_is(p, n, "ERROR") || line_starts(p, n, "SERVER_ERROR ") || line_starts(p, n, "CLIENT_ERROR ");
}

/* Parses a decimal number of at most 19 digits at *pp, stopping at a space or end; advances *pp. */
static bool parse_num(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || (p < end && *p != ' ')) {
        return false;
    }
    *pp = p;
    *out = v;
    return true;
}

/* A VALUE line, whole element (line, data, \r\n) at p with total bytes avail. Returns the element's
 * size, or 0 if more bytes are needed (s->need is then set). */
static size_t parse_value(struct sock *s, const char *p, size_t line_len, size_t avail)
{
    const struct part *pt = &s->fifo[s->fifo_head];
    const struct req *r = &s->conn->reqs[pt->slot];
    const char *end = p + line_len - 2; /* the line without \r\n */
    const char *q = p + 6;              /* after "VALUE " */
    const char *key = q;
    while (q < end && *q != ' ') {
        q++;
    }
    size_t key_len = (size_t)(q - key);
    if (q == end) {
        bad_reply(s, p, line_len, "VALUE line without flags and length");
    }
    q++;
    uint64_t flags, bytes;
    if (!parse_num(&q, end, &flags)) {
        bad_reply(s, p, line_len, "bad flags in VALUE line");
    }
    if (q == end) {
        bad_reply(s, p, line_len, "VALUE line without a length");
    }
    q++;
    if (!parse_num(&q, end, &bytes)) {
        bad_reply(s, p, line_len, "bad length in VALUE line");
    }
    if (q < end) { /* gets adds a cas unique */
        uint64_t cas;
        q++;
        if (!parse_num(&q, end, &cas) || q != end) {
            bad_reply(s, p, line_len, "trailing text in VALUE line");
        }
    }
    if (bytes != opt.value_size) {
        bad_reply(s, p, line_len, "value length differs from the one stored");
    }
    size_t total = line_len + (size_t)bytes + 2;
    if (avail < total) {
        s->need = total;
        return 0;
    }
    const char *data = p + line_len;
    if (data[bytes] != '\r' || data[bytes + 1] != '\n') {
        bad_reply(s, p, total, "value not followed by \\r\\n");
    }
    /* The key: PREFIX then the number, one of the part's keys not answered yet. */
    uint64_t k = 0;
    bool ok = key_len > opt.prefix_len && key_len - opt.prefix_len <= 10 &&
              memcmp(key, opt.prefix, opt.prefix_len) == 0;
    for (size_t i = opt.prefix_len; ok && i < key_len; i++) {
        ok = key[i] >= '0' && key[i] <= '9';
        k = k * 10 + (uint64_t)(key[i] - '0');
    }
    if (!ok) {
        bad_reply(s, p, line_len, "VALUE for a key loadgen never asks for");
    }
    uint32_t j = s->cursor;
    while (j < pt->key_cnt && r->keys[pt->key_off + j] != k) {
        j++;
    }
    if (j == pt->key_cnt) {
        bad_reply(s, p, line_len, "VALUE for a key not asked for here, or out of order");
    }
    if (flags != 0) {
        bad_reply(s, p, line_len, "flags differ from the ones stored");
    }
    if (!value_matches(data, (uint32_t)k)) {
        bad_reply(s, data, (size_t)bytes, "value differs from the one stored under this key");
    }
    s->cursor = j + 1;
    s->hits++;
    s->need = 0;
    return total;
}

/* A binary GETK/GETKQ hit for the head part: its key must be one asked for, in order, and its
 * value the one stored. */
static void bin_hit(struct sock *s, const char *p, uint16_t kl, uint8_t el, uint32_t bl)
{
    const struct part *pt = &s->fifo[s->fifo_head];
    const struct req *r = &s->conn->reqs[pt->slot];
    const char *key = p + BIN_HDR + el;
    if (el != 4 || bl != el + kl + opt.value_size) {
        bad_reply(s, p, BIN_HDR, "binary hit with unexpected extras or value length");
    }
    uint64_t k = 0;
    bool ok =
        kl > opt.prefix_len && kl - opt.prefix_len <= 10 && memcmp(key, opt.prefix, opt.prefix_len) == 0;
    for (size_t i = opt.prefix_len; ok && i < kl; i++) {
        ok = key[i] >= '0' && key[i] <= '9';
        k = k * 10 + (uint64_t)(key[i] - '0');
    }
    uint32_t j = s->cursor;
    while (ok && j < pt->key_cnt && r->keys[pt->key_off + j] != k) {
        j++;
    }
    if (!ok || j == pt->key_cnt) {
        bad_reply(s, p, BIN_HDR + el + kl, "binary hit for a key not asked for here, or out of order");
    }
    if (!value_matches(key + kl, (uint32_t)k)) {
        bad_reply(s, key + kl, opt.value_size, "value differs from the one stored under this key");
    }
    s->cursor = j + 1;
    s->hits++;
}

/* Consumes every complete binary response in s's input. */
static void sock_parse_binary(struct sock *s)
{
    while (s->in_len - s->in_off >= BIN_HDR) {
        const char *p = s->in + s->in_off;
        size_t avail = s->in_len - s->in_off;
        const uint8_t *h = (const uint8_t *)p;
        uint32_t bl = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
        uint16_t kl = (uint16_t)(h[2] << 8 | h[3]);
        uint16_t status = (uint16_t)(h[6] << 8 | h[7]);
        if (h[0] != 0x81) {
            bad_reply(s, p, BIN_HDR, "not a binary response");
        }
        if (avail < BIN_HDR + (size_t)bl) {
            s->need = BIN_HDR + (size_t)bl;
            return;
        }
        s->need = 0;
        if (s->fifo_count == 0) {
            bad_reply(s, p, BIN_HDR, "reply with no request outstanding");
        }
        const struct part *pt = &s->fifo[s->fifo_head];
        if (pt->is_set) {
            if (h[1] != BIN_SET) {
                bad_reply(s, p, BIN_HDR, "unexpected reply to a binary set");
            }
            part_done(s, status != 0);
        } else if (h[1] == BIN_NOOP || h[1] == BIN_GETK) {
            if (h[1] == BIN_GETK && status == 0) {
                bin_hit(s, p, kl, h[4], bl);
            }
            part_done(s, status != 0 && status != 1); /* 1: a miss */
        } else if (h[1] == BIN_GETKQ) {
            if (status != 0) {
                bad_reply(s, p, BIN_HDR + bl, "error reply to a binary GETKQ");
            }
            bin_hit(s, p, kl, h[4], bl);
        } else {
            bad_reply(s, p, BIN_HDR, "unexpected reply to a binary get");
        }
        s->in_off += BIN_HDR + bl;
    }
    if (s->in_off == s->in_len) {
        s->in_off = s->in_len = 0;
    }
}

/* Consumes every complete reply element in s's input. */
static void sock_parse(struct sock *s)
{
    if (opt.binary) {
        sock_parse_binary(s);
        return;
    }
    while (s->in_off < s->in_len) {
        const char *p = s->in + s->in_off;
        size_t avail = s->in_len - s->in_off;
        if (s->need > avail) {
            return;
        }
        const char *nl = memchr(p, '\n', avail < REPLY_LINE_MAX ? avail : REPLY_LINE_MAX);
        if (!nl) {
            if (avail >= REPLY_LINE_MAX) {
                bad_reply(s, p, 60, "reply line too long");
            }
            return;
        }
        size_t len = (size_t)(nl - p) + 1;
        if (len < 2 || nl[-1] != '\r') {
            bad_reply(s, p, len, "line not ended by \\r\\n");
        }
        if (s->fifo_count == 0) {
            bad_reply(s, p, len, "reply with no request outstanding");
        }
        size_t n = len - 2;
        const struct part *pt = &s->fifo[s->fifo_head];
        if (pt->is_set) {
            if (line_is(p, n, "STORED")) {
                part_done(s, false);
            } else if (is_error_line(p, n) || line_is(p, n, "NOT_STORED") || line_is(p, n, "EXISTS") ||
                       line_is(p, n, "NOT_FOUND")) {
                part_done(s, true);
            } else {
                bad_reply(s, p, len, "unexpected reply to set");
            }
            s->in_off += len;
            continue;
        }
        if (line_starts(p, n, "VALUE ")) {
            size_t used = parse_value(s, p, len, avail);
            if (used == 0) {
                return;
            }
            s->in_off += used;
            continue;
        }
        if (line_is(p, n, "END")) {
            part_done(s, false);
        } else if (is_error_line(p, n)) {
            part_done(s, true);
        } else {
            bad_reply(s, p, len, "unexpected reply to get");
        }
        s->in_off += len;
    }
    s->in_off = s->in_len = 0;
}

/* ---- libev callbacks ------------------------------------------------------------------------------ */

static void sock_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sock *s = io->data;
    /* Make room for the element being received, or a chunk. */
    size_t pending = s->in_len - s->in_off;
    size_t want = s->need > pending ? s->need - pending : 0;
    if (want < IN_CHUNK) {
        want = IN_CHUNK;
    }
    if (s->in_cap - s->in_len < want) {
        if (s->in_off > 0) {
            memmove(s->in, s->in + s->in_off, pending);
            s->in_off = 0;
            s->in_len = pending;
        }
        if (s->in_cap - s->in_len < want) {
            size_t cap = s->in_cap ? s->in_cap : IN_CHUNK;
            while (cap - s->in_len < want) {
                cap *= 2;
            }
            s->in = xrealloc(s->in, cap);
            s->in_cap = cap;
        }
    }
    ssize_t n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        die(EXIT_BAD_REPLY, "receive from %s: %s", opt.name[s->server], strerror(errno));
    }
    if (n == 0) {
        die(EXIT_BAD_REPLY, "%s closed a connection with %" PRIu32 " replies outstanding",
            opt.name[s->server], s->fifo_count);
    }
    s->in_len += (size_t)n;
    sock_parse(s);
    struct worker *w = s->conn->w;
    if (w->phase == PHASE_WARM || w->phase == PHASE_RUN) {
        conn_fill(s->conn);
    }
}

static void sock_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    sock_flush(io->data);
}

static void warm_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    die(EXIT_BAD_REPLY, "warm-up of worker %d not finished after %d s (%" PRIu32 " connections pending)",
        w->id, WARM_TIMEOUT_S, w->warm_pending);
}

static void window_end_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    worker_stop(t->data);
}

/* ---- workers -------------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (uint32_t i = 0; i < w->nconns; i++) {
        for (int s = 0; s < opt.nservers; s++) {
            struct sock *k = &w->conns[i].socks[s];
            ev_io_start(w->loop, &k->rio);
        }
    }

    if (opt.warmup) {
        w->phase = PHASE_WARM;
        w->warm_pending = w->nconns;
        ev_timer_init(&w->timer, warm_timeout_cb, WARM_TIMEOUT_S, 0);
        w->timer.data = w;
        ev_timer_start(w->loop, &w->timer);
        for (uint32_t i = 0; i < w->nconns; i++) {
            conn_fill(&w->conns[i]);
        }
        if (w->warm_pending > 0) {
            ev_run(w->loop, 0);
        }
        ev_timer_stop(w->loop, &w->timer);
    }
    w->phase = PHASE_WAIT;
    pthread_barrier_wait(&warmed);
    pthread_barrier_wait(&go);
    if (opt.warmup_only) {
        return NULL;
    }

    w->phase = PHASE_RUN;
    ev_now_update(w->loop);
    double left = opt.duration - (double)(now_ns() - window_start_ns) / 1e9;
    ev_timer_init(&w->timer, window_end_cb, left > 0 ? left : 0, 0);
    w->timer.data = w;
    ev_timer_start(w->loop, &w->timer);
    for (uint32_t i = 0; i < w->nconns; i++) {
        conn_fill(&w->conns[i]);
    }
    if (w->phase == PHASE_RUN) {
        ev_run(w->loop, 0);
    }
    /* Sockets stay open until the process exits, after main() has read the watched CPU times. */
    return NULL;
}

static int connect_to(int server)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        die(EXIT_USAGE, "socket: %s", strerror(errno));
    }
    if (connect(fd, (const struct sockaddr *)&opt.addr[server], sizeof(opt.addr[server])) != 0) {
        die(EXIT_USAGE, "connect to %s: %s", opt.name[server], strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        die(EXIT_USAGE, "fcntl: %s", strerror(errno));
    }
    return fd;
}

/* Builds worker w with nconns connections; gconn is the global index of its first connection. */
static void worker_init(struct worker *w, int id, uint32_t nconns, uint32_t gconn)
{
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop) {
        die(EXIT_USAGE, "ev_loop_new failed");
    }
    w->nconns = nconns;
    w->conns = xmalloc(sizeof(*w->conns) * nconns);
    w->rng = UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(id + 1) ^ (uint64_t)getpid();
    if (w->rng == 0) {
        w->rng = 1;
    }
    w->scratch = xmalloc(sizeof(uint32_t) * opt.mget);
    hdr_init(&w->hist);
    uint32_t cap = opt.depth > WARM_DEPTH ? (uint32_t)opt.depth : WARM_DEPTH;
    for (uint32_t i = 0; i < nconns; i++) {
        struct conn *c = &w->conns[i];
        uint64_t g = gconn + i;
        c->w = w;
        c->cap = cap;
        c->reqs = xmalloc(sizeof(*c->reqs) * cap);
        c->free_slot = xmalloc(sizeof(uint32_t) * cap);
        uint32_t *keys = xmalloc(sizeof(uint32_t) * cap * opt.mget);
        for (uint32_t j = 0; j < cap; j++) {
            c->reqs[j].keys = keys + (size_t)j * opt.mget;
            c->free_slot[j] = cap - 1 - j;
        }
        c->nfree = cap;
        c->warm_next = (uint32_t)(g * opt.keyspace / (uint64_t)opt.conns);
        c->warm_end = (uint32_t)((g + 1) * opt.keyspace / (uint64_t)opt.conns);
        c->socks = xmalloc(sizeof(*c->socks) * (size_t)opt.nservers);
        for (int s = 0; s < opt.nservers; s++) {
            struct sock *k = &c->socks[s];
            k->fd = connect_to(s);
            k->server = s;
            k->conn = c;
            k->fifo_cap = cap;
            k->fifo = xmalloc(sizeof(*k->fifo) * cap);
            ev_io_init(&k->rio, sock_read_cb, k->fd, EV_READ);
            ev_io_init(&k->wio, sock_write_cb, k->fd, EV_WRITE);
            k->rio.data = k;
            k->wio.data = k;
        }
    }
}

/* Closes w's sockets and frees everything worker_init() allocated. */
static void worker_free(struct worker *w)
{
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        for (int s = 0; s < opt.nservers; s++) {
            struct sock *k = &c->socks[s];
            close(k->fd);
            free(k->out);
            free(k->in);
            free(k->fifo);
        }
        free(c->socks);
        free(c->reqs[0].keys); /* one block for every slot's keys */
        free(c->reqs);
        free(c->free_slot);
    }
    free(w->conns);
    free(w->scratch);
    ev_loop_destroy(w->loop);
}

/* ---- CPU time of watched processes ---------------------------------------------------------------- */

struct cpu_sample {
    double user, sys; /* seconds; negative when the process could not be read */
};

static struct cpu_sample read_proc_cpu(pid_t pid)
{
    struct cpu_sample cs = {-1, -1};
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return cs;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces: count fields after its closing parenthesis. */
    char *p = strrchr(buf, ')');
    if (!p) {
        return cs;
    }
    unsigned long long utime = 0, stime = 0;
    /* fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
        return cs;
    }
    double tick = (double)sysconf(_SC_CLK_TCK);
    cs.user = (double)utime / tick;
    cs.sys = (double)stime / tick;
    return cs;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- options -------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: loadgen -s HOST:PORT [-s HOST:PORT ...] [options]\n"
           "\n"
           "A closed-loop memcached load generator; prints one JSON line with the results.\n"
           "\n"
           "  -s, --server HOST:PORT   a server (repeat, or comma-separate, for a direct run over\n"
           "                           several memcached: keys placed by fnv1a_32(key) %% nservers)\n"
           "  -c, --conns N            connections (default 50; one socket per server each)\n"
           "  -p, --pipeline N         requests outstanding per connection (default 1)\n"
           "  -d, --duration SECONDS   measured time (default 5; a limit also with -n)\n"
           "  -n, --requests N         stop after N measured requests (default: run for -d)\n"
           "  -k, --keys N             key space: keys PREFIX0 .. PREFIX<N-1> (default 10000)\n"
           "  -v, --value-size BYTES   value size (default 100)\n"
           "  -r, --ratio GET:SET      mix of gets and sets (default 9:1; 1:0 gets only)\n"
           "  -m, --mget N             keys per get (default 1)\n"
           "  -T, --threads N          worker threads, connections split among them (default 1)\n"
           "      --prefix TEXT        key prefix (default lg<value-size>:)\n"
           "      --no-warmup          do not set every key before measuring\n"
           "      --warmup-only        set every key, print the JSON line, exit\n"
           "      --watch-pid PID      report this process's CPU seconds over the window (repeatable)\n"
           "      --label TEXT         copied into the JSON line\n"
           "      --binary             memcached's binary protocol: SET, GETK for one key, GETKQ...NOOP for\n"
           "                           several (default: text get/set)\n"
           "  -h, --help               this text\n"
           "\n"
           "Exit status: 0 done (errors and misses are counted in the JSON), 1 bad usage or setup,\n"
           "2 a malformed reply, a closed connection or a warm-up that did not finish.\n");
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        die(EXIT_USAGE, "%s must be a number from %ld to %ld, not '%s'", what, lo, hi, s);
    }
    return v;
}

static void add_server(const char *text)
{
    if (opt.nservers == MAX_SERVERS) {
        die(EXIT_USAGE, "at most %d servers", MAX_SERVERS);
    }
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host)) {
        die(EXIT_USAGE, "server '%s' is not HOST:PORT", text);
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    long port = parse_long(colon + 1, "a port", 1, 65535);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        die(EXIT_USAGE, "server '%s': %s", text, gai_strerror(rc));
    }
    struct sockaddr_in *a = &opt.addr[opt.nservers];
    memcpy(a, res->ai_addr, sizeof(*a));
    a->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    snprintf(opt.name[opt.nservers], sizeof(opt.name[0]), "%s", text);
    opt.nservers++;
}

static void parse_options(int argc, char **argv)
{
    enum { OPT_PREFIX = 256, OPT_NO_WARMUP, OPT_WARMUP_ONLY, OPT_WATCH, OPT_LABEL, OPT_BINARY };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"conns", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"duration", required_argument, NULL, 'd'},
        {"requests", required_argument, NULL, 'n'},
        {"keys", required_argument, NULL, 'k'},
        {"value-size", required_argument, NULL, 'v'},
        {"ratio", required_argument, NULL, 'r'},
        {"mget", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 'T'},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"no-warmup", no_argument, NULL, OPT_NO_WARMUP},
        {"warmup-only", no_argument, NULL, OPT_WARMUP_ONLY},
        {"watch-pid", required_argument, NULL, OPT_WATCH},
        {"label", required_argument, NULL, OPT_LABEL},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opt.conns = 50;
    opt.depth = 1;
    opt.threads = 1;
    opt.duration = 5;
    opt.keyspace = 10000;
    opt.value_size = 100;
    opt.get_weight = 9;
    opt.set_weight = 1;
    opt.mget = 1;
    opt.warmup = true;
    bool have_prefix = false;

    int ch;
    while ((ch = getopt_long(argc, argv, "s:c:p:d:n:k:v:r:m:T:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': {
            char *copy = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                add_server(t);
            }
            free(copy);
            break;
        }
        case 'c':
            opt.conns = (int)parse_long(optarg, "-c", 1, 100000);
            break;
        case 'p':
            opt.depth = (int)parse_long(optarg, "-p", 1, 4096);
            break;
        case 'd': {
            char *end;
            opt.duration = strtod(optarg, &end);
            if (*end || end == optarg || !(opt.duration > 0 && opt.duration <= 86400)) {
                die(EXIT_USAGE, "-d must be seconds, more than 0 and at most 86400, not '%s'", optarg);
            }
            break;
        }
        case 'n':
            opt.requests = (uint64_t)parse_long(optarg, "-n", 1, 1000000000000L);
            break;
        case 'k':
            opt.keyspace = (uint32_t)parse_long(optarg, "-k", 1, 1000000000L);
            break;
        case 'v':
            opt.value_size = (uint32_t)parse_long(optarg, "-v", 1, 64L << 20);
            break;
        case 'r': {
            char *colon = strchr(optarg, ':');
            if (!colon) {
                die(EXIT_USAGE, "-r must be GET:SET, e.g. 9:1, not '%s'", optarg);
            }
            *colon = '\0';
            opt.get_weight = (uint32_t)parse_long(optarg, "-r GET", 0, 1000000);
            opt.set_weight = (uint32_t)parse_long(colon + 1, "-r SET", 0, 1000000);
            if (opt.get_weight + opt.set_weight == 0) {
                die(EXIT_USAGE, "-r: one of GET and SET must be more than 0");
            }
            break;
        }
        case 'm':
            opt.mget = (uint32_t)parse_long(optarg, "-m", 1, MAX_MGET);
            break;
        case 'T':
            opt.threads = (int)parse_long(optarg, "-T", 1, 256);
            break;
        case OPT_PREFIX:
            if (strlen(optarg) > MAX_PREFIX || strpbrk(optarg, " \t\r\n")) {
                die(EXIT_USAGE, "--prefix: at most %d characters, no spaces", MAX_PREFIX);
            }
            snprintf(opt.prefix, sizeof(opt.prefix), "%s", optarg);
            have_prefix = true;
            break;
        case OPT_NO_WARMUP:
            opt.warmup = false;
            break;
        case OPT_WARMUP_ONLY:
            opt.warmup = opt.warmup_only = true;
            break;
        case OPT_WATCH:
            if (opt.nwatch == MAX_WATCH) {
                die(EXIT_USAGE, "at most %d --watch-pid", MAX_WATCH);
            }
            opt.watch[opt.nwatch++] = (pid_t)parse_long(optarg, "--watch-pid", 1, 1L << 30);
            break;
        case OPT_BINARY:
            opt.binary = true;
            break;
        case OPT_LABEL:
            if (strpbrk(optarg, "\"\\")) {
                die(EXIT_USAGE, "--label: no quotes or backslashes");
            }
            opt.label = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        die(EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    }
    if (opt.nservers == 0) {
        usage(stderr);
        exit(EXIT_USAGE);
    }
    if (opt.threads > opt.conns) {
        die(EXIT_USAGE, "-T %d is more than -c %d", opt.threads, opt.conns);
    }
    if (opt.requests && opt.requests < (uint64_t)opt.threads) {
        die(EXIT_USAGE, "-n must be at least -T");
    }
    if (opt.mget > 1 && opt.keyspace < 2 * opt.mget) {
        die(EXIT_USAGE, "-k must be at least twice -m (a get asks for distinct keys)");
    }
    if (opt.get_weight == 0 && opt.mget > 1) {
        die(EXIT_USAGE, "-m has no effect without gets");
    }
    if (!have_prefix) {
        snprintf(opt.prefix, sizeof(opt.prefix), "lg%" PRIu32 ":", opt.value_size);
    }
    opt.prefix_len = strlen(opt.prefix);
}

/* Raises the open-file limit to what the connections need, if the hard limit allows. */
static void raise_nofile(void)
{
    rlim_t want = (rlim_t)opt.conns * (rlim_t)opt.nservers + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        die(EXIT_USAGE, "%llu sockets need a higher open-file limit than %llu (ulimit -n)",
            (unsigned long long)want, (unsigned long long)rl.rlim_cur);
    }
}

/* ---- result --------------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Requests completed per connection, sorted. In a closed loop a connection served worse than the
 * others completes fewer: the spread says whether the target is fair to its clients, which a
 * latency histogram over all connections cannot tell apart from every client seeing the same tail. */
static void print_conn_fairness(const struct worker *workers)
{
    uint64_t *n = xmalloc(sizeof(*n) * (size_t)opt.conns);
    size_t k = 0;
    for (int t = 0; t < opt.threads; t++) {
        for (uint32_t i = 0; i < workers[t].nconns; i++) {
            n[k++] = workers[t].conns[i].measured;
        }
    }
    qsort(n, k, sizeof(*n), cmp_u64);
    printf("\"conn_requests\":{\"min\":%" PRIu64 ",\"p1\":%" PRIu64 ",\"p10\":%" PRIu64 ",\"median\":%" PRIu64
           ",\"p90\":%" PRIu64 ",\"max\":%" PRIu64 "},",
           n[0], n[k / 100], n[k / 10], n[k / 2], n[k * 9 / 10], n[k - 1]);
    free(n);
}

static void print_result(const struct counters *c, const struct hdr *h, double elapsed, double gen_cpu,
                         const struct cpu_sample *before, const struct cpu_sample *after,
                         const struct worker *workers)
{
    printf("{");
    if (opt.label) {
        printf("\"label\":\"%s\",", opt.label);
    }
    printf("\"protocol\":\"%s\",", opt.binary ? "binary" : "text");
    printf("\"servers\":[");
    for (int i = 0; i < opt.nservers; i++) {
        printf("%s\"%s\"", i ? "," : "", opt.name[i]);
    }
    printf("],\"conns\":%d,\"pipeline\":%d,\"threads\":%d,\"keyspace\":%" PRIu32 ",\"value_size\":%" PRIu32
           ",\"ratio\":\"%" PRIu32 ":%" PRIu32 "\",\"mget\":%" PRIu32 ",",
           opt.conns, opt.depth, opt.threads, opt.keyspace, opt.value_size, opt.get_weight, opt.set_weight,
           opt.mget);
    printf("\"warmup_sets\":%" PRIu64 ",\"warmup_errors\":%" PRIu64 ",", c->warm_sets, c->warm_errors);
    printf("\"elapsed_s\":%.6f,\"requests\":%" PRIu64 ",\"gets\":%" PRIu64 ",\"sets\":%" PRIu64
           ",\"keys\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"errors\":%" PRIu64 ",",
           elapsed, c->requests, c->gets, c->sets, c->keys, c->hits, c->misses, c->errors);
    double rps = elapsed > 0 ? (double)c->requests / elapsed : 0;
    double kps = elapsed > 0 ? (double)c->keys / elapsed : 0;
    printf("\"rps\":%.1f,\"keys_per_s\":%.1f,", rps, kps);
    printf(
        "\"mean_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,",
        hdr_mean(h) / 1e3, (double)hdr_quantile(h, 0.50) / 1e3, (double)hdr_quantile(h, 0.90) / 1e3,
        (double)hdr_quantile(h, 0.99) / 1e3, (double)hdr_quantile(h, 0.999) / 1e3, (double)h->max / 1e3);
    print_conn_fairness(workers);
    printf("\"gen_cpu_s\":%.3f,\"watch\":[", gen_cpu);
    for (int i = 0; i < opt.nwatch; i++) {
        bool ok = before[i].user >= 0 && after[i].user >= 0;
        double user = ok ? after[i].user - before[i].user : -1;
        double sys = ok ? after[i].sys - before[i].sys : -1;
        printf("%s{\"pid\":%d,\"user_s\":%.2f,\"sys_s\":%.2f,\"cpu_s\":%.2f}", i ? "," : "",
               (int)opt.watch[i], user, sys, ok ? user + sys : -1);
    }
    printf("]}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    pattern = xmalloc(opt.value_size + 1);
    uint32_t x = 12345;
    for (uint32_t i = 0; i < opt.value_size; i++) {
        x = x * 1103515245u + 12345u;
        pattern[i] = (char)('a' + (x >> 16) % 26);
    }
    key_server = xmalloc(opt.keyspace);
    if (opt.nservers > 1) {
        char key[KEY_BUF];
        for (uint32_t k = 0; k < opt.keyspace; k++) {
            key_server[k] = (uint8_t)(fnv1a_32(key, key_format(key, k)) % (uint32_t)opt.nservers);
        }
    }

    struct worker *workers = xmalloc(sizeof(*workers) * (size_t)opt.threads);
    uint32_t first = 0;
    for (int t = 0; t < opt.threads; t++) {
        uint32_t n = (uint32_t)(opt.conns / opt.threads + (t < opt.conns % opt.threads ? 1 : 0));
        worker_init(&workers[t], t, n, first);
        first += n;
        uint64_t share = opt.requests / (uint64_t)opt.threads;
        workers[t].quota = opt.requests ? share + (t == 0 ? opt.requests % (uint64_t)opt.threads : 0) : 0;
    }

    pthread_barrier_init(&warmed, NULL, (unsigned)opt.threads + 1);
    pthread_barrier_init(&go, NULL, (unsigned)opt.threads + 1);
    for (int t = 0; t < opt.threads; t++) {
        if (pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]) != 0) {
            die(EXIT_USAGE, "pthread_create failed");
        }
    }

    struct cpu_sample before[MAX_WATCH] = {{0, 0}}, after[MAX_WATCH] = {{0, 0}};
    pthread_barrier_wait(&warmed);
    for (int i = 0; i < opt.nwatch; i++) {
        before[i] = read_proc_cpu(opt.watch[i]);
    }
    double gen_before = self_cpu();
    window_start_ns = now_ns();
    pthread_barrier_wait(&go);

    uint64_t end_ns = window_start_ns;
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(workers[t].tid, NULL);
        if (workers[t].end_ns > end_ns) {
            end_ns = workers[t].end_ns;
        }
    }
    for (int i = 0; i < opt.nwatch; i++) {
        after[i] = read_proc_cpu(opt.watch[i]);
    }
    double gen_cpu = self_cpu() - gen_before;

    struct counters total = {0};
    static struct hdr hist;
    hdr_init(&hist);
    for (int t = 0; t < opt.threads; t++) {
        const struct counters *c = &workers[t].c;
        total.requests += c->requests;
        total.gets += c->gets;
        total.sets += c->sets;
        total.keys += c->keys;
        total.hits += c->hits;
        total.misses += c->misses;
        total.errors += c->errors;
        total.warm_sets += c->warm_sets;
        total.warm_errors += c->warm_errors;
        hdr_merge(&hist, &workers[t].hist);
    }
    print_result(&total, &hist, (double)(end_ns - window_start_ns) / 1e9, gen_cpu, before, after, workers);

    for (int t = 0; t < opt.threads; t++) {
        worker_free(&workers[t]);
    }
    free(workers);
    free(pattern);
    free(key_server);
    pthread_barrier_destroy(&warmed);
    pthread_barrier_destroy(&go);
    return 0;
}
