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
 */
#ifndef MEMRELAY_ASCII_H
#define MEMRELAY_ASCII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How memrelay handles a command. */
typedef enum {
    MR_CLASS_RETRIEVAL,  /* get gets gat gats: any number of keys, split per server */
    MR_CLASS_STORAGE,    /* set add replace append prepend cas: line + data block */
    MR_CLASS_KEYED,      /* delete incr decr touch: one key, one-line reply */
    MR_CLASS_META_KEYED, /* mg ms md ma me: one key (first token), one reply */
    MR_CLASS_LOCAL,      /* answered by memrelay itself: mn stats verbosity quit */
    MR_CLASS_BROADCAST,  /* sent to every server of the pool: flush_all */
    MR_CLASS_ANY_SERVER, /* sent to one server of the pool: version */
} mr_cmd_class;

/* X(enum suffix, wire name, class) */
#define MR_COMMANDS(X)                        \
    X(GET, "get", MR_CLASS_RETRIEVAL)         \
    X(GETS, "gets", MR_CLASS_RETRIEVAL)       \
    X(GAT, "gat", MR_CLASS_RETRIEVAL)         \
    X(GATS, "gats", MR_CLASS_RETRIEVAL)       \
    X(SET, "set", MR_CLASS_STORAGE)           \
    X(ADD, "add", MR_CLASS_STORAGE)           \
    X(REPLACE, "replace", MR_CLASS_STORAGE)   \
    X(APPEND, "append", MR_CLASS_STORAGE)     \
    X(PREPEND, "prepend", MR_CLASS_STORAGE)   \
    X(CAS, "cas", MR_CLASS_STORAGE)           \
    X(DELETE, "delete", MR_CLASS_KEYED)       \
    X(INCR, "incr", MR_CLASS_KEYED)           \
    X(DECR, "decr", MR_CLASS_KEYED)           \
    X(TOUCH, "touch", MR_CLASS_KEYED)         \
    X(MG, "mg", MR_CLASS_META_KEYED)          \
    X(MS, "ms", MR_CLASS_META_KEYED)          \
    X(MD, "md", MR_CLASS_META_KEYED)          \
    X(MA, "ma", MR_CLASS_META_KEYED)          \
    X(ME, "me", MR_CLASS_META_KEYED)          \
    X(MN, "mn", MR_CLASS_LOCAL)               \
    X(STATS, "stats", MR_CLASS_LOCAL)         \
    X(VERBOSITY, "verbosity", MR_CLASS_LOCAL) \
    X(QUIT, "quit", MR_CLASS_LOCAL)           \
    X(FLUSH_ALL, "flush_all", MR_CLASS_BROADCAST) \
    X(VERSION, "version", MR_CLASS_ANY_SERVER)

typedef enum {
#define MR_CMD_ENUM(e, name, cls) MR_CMD_##e,
    MR_COMMANDS(MR_CMD_ENUM)
#undef MR_CMD_ENUM
        MR_CMD_COUNT
} mr_cmd;

const char *mr_cmd_name(mr_cmd cmd);
mr_cmd_class mr_cmd_class_of(mr_cmd cmd);

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
    uint32_t line_len;   /* bytes of the command line including its terminating "\n" */
    uint32_t data_len;   /* bytes of the data block that follow the line, including its "\r\n"
                            (storage commands and ms); 0 otherwise */
    /* Keys. Keyed and meta commands: key_off/key_len is the key as written
     * (still base64 when meta_base64). Retrieval: the first key, with nkeys
     * keys in all; walk them with mr_next_key() from keys_off. */
    uint32_t key_off, key_len;
    uint32_t keys_off;
    uint32_t nkeys;
    /* gat/gats exptime, flush_all delay, verbosity level, stats argument:
     * the first argument token, len 0 when absent. */
    uint32_t arg_off, arg_len;
    bool noreply;        /* ascii `noreply`, or meta `q` */
    /* The span of the line that memrelay drops when forwarding: " noreply"
     * or a meta " q" flag (the proxy applies quiet mode itself so that every
     * forwarded request has exactly one reply). strip_len 0: nothing. */
    uint32_t strip_off, strip_len;
    bool meta_base64;    /* meta 'b' flag: the key is base64 */

    /* MR_PARSE_ERROR only */
    const char *error_reply; /* exact bytes to send, "\r\n" included */
    mr_after_error after;
    uint32_t swallow_len;
} mr_request_head;

/* Parse the first command in buf[0..len). `item_size_max` is the largest
 * value accepted (memcached -I). `max_line` bounds a line that has no
 * newline yet: past it memcached's "line too long" handling applies. */
mr_parse_status mr_parse_request(const char *buf, size_t len, uint32_t item_size_max, uint32_t max_line,
                                 mr_request_head *out);

/* After line_len + data_len bytes are present: the data block must end in
 * "\r\n". Returns NULL when it does, else the error reply memcached sends
 * ("CLIENT_ERROR bad data chunk\r\n"); the data block is consumed either way. */
const char *mr_check_data_block(const char *data, uint32_t data_len);

/* Walk the keys of a retrieval command. `*pos` starts at head->keys_off.
 * Returns true and the next key's span, or false at the end of the line. */
bool mr_next_key(const char *buf, const mr_request_head *head, uint32_t *pos, uint32_t *key_off,
                 uint32_t *key_len);

/* Copy the command line for forwarding: without the strip span, ending in
 * "\r\n". Returns the bytes written, or 0 if `cap` is too small. */
size_t mr_forward_line(const char *buf, const mr_request_head *head, char *out, size_t cap);

/* Meta quiet mode: does a quiet (q) request of `cmd` suppress this reply line?
 * (mg: EN; ms: HD; md: HD and NF; ma: HD and NF; as memcached does.) */
bool mr_meta_quiet_suppresses(mr_cmd cmd, const char *reply_line, size_t len);

/* Decode base64 `in` into `out` (cap bytes). Returns decoded length or -1. */
long mr_base64_decode(const char *in, size_t len, char *out, size_t cap);

#endif
