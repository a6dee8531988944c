/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* ascii.h: the client-side request parser (memcached ASCII and meta protocol).
 *
 * The parser is stateless and allocation-free: give it the unconsumed bytes
 * of a client's input and it either describes one complete command line, asks
 * for more bytes, or says exactly which error memcached would answer and what
 * memcached does afterwards. Offsets in mr_request_head are relative to the
 * start of the buffer passed in, so they stay valid while those bytes stay put.
 *
 * Validation is done here, not by the backend, because a proxy must know where
 * one request ends and the next begins no matter how bad the input is: the
 * rules follow memcached 1.6 (proto_text.c) so replies are byte-identical.
 * Every rule was measured against memcached 1.6.18; docs/protocol-errors.md
 * lists the inputs, memcached's replies and what happens to the connection.
 *
 * The parser reads only the first line of the buffer (one memchr for its
 * "\n"), so a large pipelined buffer costs time linear in what is consumed.
 */
#ifndef MEMRELAY_ASCII_H
#define MEMRELAY_ASCII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/limits.h"

/* How memrelay handles a command. */
typedef enum {
    MR_CLASS_RETRIEVAL,   /* get gets gat gats: any number of keys, split per server */
    MR_CLASS_STORAGE,     /* set add replace append prepend cas: line + data block */
    MR_CLASS_KEYED,       /* delete incr decr touch: one key, one-line reply */
    MR_CLASS_META_KEYED,  /* mg ms md ma me: one key (first token), one reply */
    MR_CLASS_LOCAL,       /* answered by memrelay itself: mn stats verbosity quit */
    MR_CLASS_BROADCAST,   /* sent to every server of the pool: flush_all */
    MR_CLASS_ANY_SERVER,  /* sent to one server of the pool: version */
    MR_CLASS_UNSUPPORTED, /* memcached admin commands that only make sense on one memcached:
                             never MR_PARSE_OK; answered by error_reply (docs/protocol-errors.md) */
} mr_cmd_class;

/* X(enum suffix, wire name, class) */
#define MR_COMMANDS(X)                                        \
    X(GET, "get", MR_CLASS_RETRIEVAL)                         \
    X(GETS, "gets", MR_CLASS_RETRIEVAL)                       \
    X(GAT, "gat", MR_CLASS_RETRIEVAL)                         \
    X(GATS, "gats", MR_CLASS_RETRIEVAL)                       \
    X(SET, "set", MR_CLASS_STORAGE)                           \
    X(ADD, "add", MR_CLASS_STORAGE)                           \
    X(REPLACE, "replace", MR_CLASS_STORAGE)                   \
    X(APPEND, "append", MR_CLASS_STORAGE)                     \
    X(PREPEND, "prepend", MR_CLASS_STORAGE)                   \
    X(CAS, "cas", MR_CLASS_STORAGE)                           \
    X(DELETE, "delete", MR_CLASS_KEYED)                       \
    X(INCR, "incr", MR_CLASS_KEYED)                           \
    X(DECR, "decr", MR_CLASS_KEYED)                           \
    X(TOUCH, "touch", MR_CLASS_KEYED)                         \
    X(MG, "mg", MR_CLASS_META_KEYED)                          \
    X(MS, "ms", MR_CLASS_META_KEYED)                          \
    X(MD, "md", MR_CLASS_META_KEYED)                          \
    X(MA, "ma", MR_CLASS_META_KEYED)                          \
    X(ME, "me", MR_CLASS_META_KEYED)                          \
    X(MN, "mn", MR_CLASS_LOCAL)                               \
    X(STATS, "stats", MR_CLASS_LOCAL)                         \
    X(VERBOSITY, "verbosity", MR_CLASS_LOCAL)                 \
    X(QUIT, "quit", MR_CLASS_LOCAL)                           \
    X(FLUSH_ALL, "flush_all", MR_CLASS_BROADCAST)             \
    X(VERSION, "version", MR_CLASS_ANY_SERVER)                \
    X(SHUTDOWN, "shutdown", MR_CLASS_UNSUPPORTED)             \
    X(CACHE_MEMLIMIT, "cache_memlimit", MR_CLASS_UNSUPPORTED) \
    X(SLABS, "slabs", MR_CLASS_UNSUPPORTED)                   \
    X(LRU_CRAWLER, "lru_crawler", MR_CLASS_UNSUPPORTED)       \
    X(LRU, "lru", MR_CLASS_UNSUPPORTED)                       \
    X(WATCH, "watch", MR_CLASS_UNSUPPORTED)                   \
    X(EXTSTORE, "extstore", MR_CLASS_UNSUPPORTED)             \
    X(REFRESH_CERTS, "refresh_certs", MR_CLASS_UNSUPPORTED)

typedef enum {
#define MR_CMD_ENUM(e, name, cls) MR_CMD_##e,
    MR_COMMANDS(MR_CMD_ENUM)
#undef MR_CMD_ENUM
        MR_CMD_COUNT
} mr_cmd;

/* Wire name and class of a command (cmd < MR_CMD_COUNT). */
const char *mr_cmd_name(mr_cmd cmd);
mr_cmd_class mr_cmd_class_of(mr_cmd cmd);

/* memcached's limits, as measured on 1.6.18 (the longest key is MR_KEY_MAX, limits.h). */
/* memcached closes a connection whose unread input has no "\n" in more
 * than this many bytes, unless the line is a get/gets... */
#define MR_ASCII_MC_LINE_PEEK 2048u
/* ... so a non-get line longer than its read buffer always closes. */
#define MR_ASCII_MC_READ_BUF 16384u
/* memcached -I default. */
#define MR_ASCII_DEFAULT_ITEM_SIZE_MAX 1048576u
/* memrelay's bound on a get/gets line (memcached has none; it slows to a
 * crawl and grows without limit on a 16 MiB multi-get). 2 MiB holds about
 * 8,000 keys of 250 bytes or 50,000 keys of 40. */
#define MR_ASCII_DEFAULT_MAX_LINE (2u * 1024u * 1024u)

typedef enum {
    MR_PARSE_OK,        /* one command line is complete and valid (data may still be due) */
    MR_PARSE_NEED_MORE, /* no complete line yet; read more and call again */
    MR_PARSE_ERROR,     /* answer error_reply, then do what `after` says */
} mr_parse_status;

/* What memcached does after an error reply. */
typedef enum {
    MR_AFTER_CONTINUE, /* drop line_len bytes and go on with the next command */
    MR_AFTER_SWALLOW,  /* drop line_len bytes, then swallow swallow_len more bytes */
    MR_AFTER_CLOSE,    /* send the reply, then close the connection */
} mr_after_error;

typedef struct {
    mr_cmd cmd;
    uint32_t line_len; /* bytes of the command line including its terminating "\n" */
    uint32_t data_len; /* bytes of the data block that follow the line, including its "\r\n"
                          (storage commands and ms); 0 otherwise */
    /* Keys. Keyed and meta commands: key_off/key_len is the key as written
     * (still base64 when meta_base64). Retrieval: the first key, with nkeys
     * keys in all; walk them with mr_next_key() from keys_off. */
    uint32_t key_off, key_len;
    uint32_t keys_off;
    uint32_t nkeys;
    /* gat/gats exptime, flush_all delay, verbosity level, stats argument:
     * the first argument token, len 0 when absent. Also the number after
     * the key of incr/decr (delta) and touch (exptime). */
    uint32_t arg_off, arg_len;
    bool noreply; /* ascii `noreply`, or meta `q` */
    /* The span of the line that memrelay drops when forwarding: " noreply"
     * or a meta " q" flag (the proxy applies quiet mode itself so that every
     * forwarded request has exactly one reply). strip_len 0: nothing. */
    uint32_t strip_off, strip_len;
    /* `ma` with both `q` and `N`: memcached shows the HD/VA of an item that N
     * has just created and hides that of an item it incremented, and the reply
     * does not say which happened. So only the server can apply this `q`: the
     * proxy forwards the line with `q` kept (strip span ignored) and fences it
     * with `mn` (dispatch.c). Set only on a line that parsed OK. */
    bool quiet_by_server;
    bool meta_base64; /* meta 'b' flag: the key is base64 */
    uint32_t end_off; /* end of the line's text: before its "\r\n" or "\n", or at its first
                         NUL byte (memcached ignores the rest of a line after a NUL) */

    /* MR_PARSE_ERROR only. cmd is the command when it was recognised, else
     * MR_CMD_COUNT. error_reply is NULL when memcached sends nothing (an
     * error silenced by `noreply`, or a line so long that it just closes). */
    const char *error_reply; /* exact bytes to send, "\r\n" included */
    mr_after_error after;
    uint32_t swallow_len;
    /* memcached also unlinks the key (key_off/key_len, base64 when
     * meta_base64) as a side effect of this error: a `set` or any `ms` whose
     * value is too large. A proxy that answers locally should send the key's
     * server a quiet delete to stay identical. */
    bool error_unlinks_key;
} mr_request_head;

/* Parse the first command in buf[0..len). `item_size_max` is the largest
 * item accepted (memcached -I; the value limit is that minus memcached's item
 * header, as memcached computes it). `max_line` is memrelay's bound on a line
 * with no newline yet (default MR_ASCII_DEFAULT_MAX_LINE): a get/gets line
 * past it is refused with "SERVER_ERROR line too long" and the connection
 * closes. Other lines follow memcached, which closes silently when more than
 * MR_ASCII_MC_LINE_PEEK bytes have no newline, or the line is longer than
 * MR_ASCII_MC_READ_BUF (both lowered to max_line if it is smaller).
 * A few well-formed lines are answered through MR_PARSE_ERROR because memcached
 * answers them without touching any item: `gat <exptime>` with no key ("END"),
 * `shutdown`, `refresh_certs` and the MR_CLASS_UNSUPPORTED admin commands. */
mr_parse_status mr_parse_request(const char *buf, size_t len, uint32_t item_size_max, uint32_t max_line,
                                 mr_request_head *out);

/* After line_len + data_len bytes are present: the data block must end in
 * "\r\n". Returns NULL when it does, else the error reply memcached sends
 * ("CLIENT_ERROR bad data chunk\r\n"); the data block is consumed either way. */
const char *mr_check_data_block(const char *data, uint32_t data_len);

/* The reply to a bad data block of this request: "CLIENT_ERROR bad data
 * chunk\r\n", or NULL when memcached stays silent (a classic storage command
 * with `noreply`; meta ms always answers, q or not). */
const char *mr_bad_data_reply(const mr_request_head *head);

/* memcached switches a connection to its binary protocol when the very first
 * byte it reads is 0x80 (later 0x80 bytes are just text and get ERROR). Call
 * this on a connection's first bytes; when it returns true, the connection
 * speaks binary (binary.h) for its whole life. */
bool mr_is_binary_protocol(const char *buf, size_t len);

/* Walk the keys of a retrieval command. `*pos` starts at head->keys_off.
 * Returns true and the next key's span, or false at the end of the line. */
bool mr_next_key(const char *buf, const mr_request_head *head, uint32_t *pos, uint32_t *key_off,
                 uint32_t *key_len);

/* Copy the command line for forwarding: without the strip span, ending in
 * "\r\n". Returns the bytes written, or 0 if `cap` is too small. */
size_t mr_forward_line(const char *buf, const mr_request_head *head, char *out, size_t cap);

/* Meta quiet mode: does a quiet (q) request of `cmd` suppress this reply line?
 * Measured on memcached 1.6.18: mg: EN only (a hit's HD or VA is sent);
 * ms: HD only (NS EX NF are sent); md: HD only (NF and EX are sent);
 * ma: HD and VA (NF NS EX are sent). An ma with N shows the HD/VA of an item
 * N just created, which its reply cannot tell from an increment: such a
 * request is marked quiet_by_server and its server applies q itself.
 * Errors (CLIENT_ERROR, SERVER_ERROR) are never suppressed; me and mn ignore q. */
bool mr_meta_quiet_suppresses(mr_cmd cmd, const char *reply_line, size_t len);

/* Decode base64 `in` into `out` (cap bytes). Returns decoded length or -1.
 * Decodes exactly as memcached does for meta keys: characters outside the
 * base64 alphabet and '=' are skipped; the rest must be a non-zero multiple of
 * four; decoding stops after the first group holding '=' (one '=' drops one
 * byte, two drop two, more is an error). */
long mr_base64_decode(const char *in, size_t len, char *out, size_t cap);

#endif
