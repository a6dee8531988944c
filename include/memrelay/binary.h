/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* binary.h: memcached's binary protocol, translated to and from meta commands.
 *
 * A pure, I/O-free layer: it parses binary requests, writes the meta command
 * that does the same thing on a memcached 1.6 server, and turns the server's
 * meta reply back into the binary response memcached itself would have sent
 * (opaque, CAS, extras, status codes and error texts). The servers keep
 * speaking text/meta, so routing, replication, health and every other feature
 * apply to binary clients unchanged. Every rule below was read in memcached
 * 1.6.18's proto_bin.c and then measured against Debian's memcached 1.6.18
 * (tests/unit/test_binary.c records how); docs/binary-protocol.md has the
 * whole translation table and the places where it cannot be exact.
 *
 * Served on every listener by proxy/client.c (bin_process), with core's
 * emit.c translating replies back (mr_req.bin). The integration contract it
 * follows:
 *
 *  1. A connection whose very first byte is 0x80 (mr_is_binary_protocol()) is
 *     binary for its whole life, as in memcached.
 *  2. Call mr_bin_parse() on the unread input:
 *     - MR_BIN_NEED_MORE: read until `need` bytes are buffered (the parser
 *       only asks for what memcached itself would buffer: at most the
 *       header, extras and key, plus a value within item_size_max).
 *     - MR_BIN_ERROR: if `reply`, queue mr_bin_error_reply() in order; if
 *       `error_unlinks_key`, send the key's server a quiet delete (memcached
 *       unlinks the key of a SET whose value is too large; the key is
 *       key/keylen, to be written with mr_bin_meta_key()); then `after` says
 *       what to do: drop `consumed` bytes and go on, drop them and then
 *       discard `swallow` more bytes as they arrive, or close once the
 *       replies already due are written.
 *     - MR_BIN_OK: call mr_bin_translate(), then drop `consumed` bytes.
 *  3. mr_bin_translate() fills a reply plan (keep it with the request: it
 *     owns a copy of the key, so the input may be dropped at once) and says
 *     what to do by class:
 *     - MR_BIN_CLASS_KEYED: send the meta line (then the value and "\r\n"
 *       when `data_len` or `has_data`) to the server(s) of plan.key (route
 *       on these raw bytes: a base64 key is placed by its decoded bytes, as
 *       for text clients). Hand the reply element to mr_bin_translate_elem().
 *     - MR_BIN_CLASS_BROADCAST (FLUSH): send the flush_all line to every
 *       server, merge as for text clients (OK only if all said OK), and
 *       translate the merged line.
 *     - MR_BIN_CLASS_ANY_SERVER (VERSION): send "version" to one server and
 *       translate its VERSION line (or answer mr_bin_version_reply()).
 *     - MR_BIN_CLASS_LOCAL: NOOP (mr_bin_ok_reply() after every earlier
 *       reply), QUIT (the same unless quiet, then close), STAT (memrelay's
 *       stats text for argument plan.key, through mr_bin_stats_reply()),
 *       SASL_* (mr_bin_sasl_list_reply(), mr_bin_sasl()).
 *     A non-zero status from mr_bin_translate() means the request cannot be
 *     sent: answer mr_bin_status_reply(plan, status, NULL) locally.
 *  4. Replies go out in request order; a reply whose translation says
 *     `suppressed` (quiet commands) takes no place at all. memcached holds
 *     quiet-mode output until a NOOP or a non-quiet command; sending at once
 *     is indistinguishable to a client, which reads responses in order.
 *  5. memrelay's own failures (timeout, backend unavailable, ...) are the
 *     usual "SERVER_ERROR <reason>\r\n" lines, translated like server lines:
 *     see mr_bin_translate_reply() for the statuses chosen.
 */
#ifndef MEMRELAY_BINARY_H
#define MEMRELAY_BINARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/auth.h"
#include "memrelay/reply.h"

/* ---- the wire ---- */

#define MR_BIN_HEADER_LEN 24u
#define MR_BIN_REQ_MAGIC 0x80u
#define MR_BIN_RES_MAGIC 0x81u
/* memcached's key limit (the binary header allows 65535). */
#define MR_BIN_KEY_MAX 250u
/* memcached reads a request's header, extras and key into its 16 KiB read
 * buffer before looking at them: more than that and it closes, silently. */
#define MR_BIN_MC_READ_BUF 16384u
/* memcached refuses SASL mechanism names longer than this. */
#define MR_BIN_SASL_MECH_MAX 32u
/* The longest binary key meta can carry: a key written as base64 is limited
 * to 250 characters as written, i.e. 186 decoded bytes. */
#define MR_BIN_B64_KEY_MAX 186u

/* X(name, opcode). The opcodes of memcached 1.6's protocol_binary.h, plus
 * VERBOSITY, which 1.6 no longer implements (it answers "Unknown command"). */
#define MR_BIN_OPCODES(X)    \
    X(GET, 0x00)             \
    X(SET, 0x01)             \
    X(ADD, 0x02)             \
    X(REPLACE, 0x03)         \
    X(DELETE, 0x04)          \
    X(INCREMENT, 0x05)       \
    X(DECREMENT, 0x06)       \
    X(QUIT, 0x07)            \
    X(FLUSH, 0x08)           \
    X(GETQ, 0x09)            \
    X(NOOP, 0x0a)            \
    X(VERSION, 0x0b)         \
    X(GETK, 0x0c)            \
    X(GETKQ, 0x0d)           \
    X(APPEND, 0x0e)          \
    X(PREPEND, 0x0f)         \
    X(STAT, 0x10)            \
    X(SETQ, 0x11)            \
    X(ADDQ, 0x12)            \
    X(REPLACEQ, 0x13)        \
    X(DELETEQ, 0x14)         \
    X(INCREMENTQ, 0x15)      \
    X(DECREMENTQ, 0x16)      \
    X(QUITQ, 0x17)           \
    X(FLUSHQ, 0x18)          \
    X(APPENDQ, 0x19)         \
    X(PREPENDQ, 0x1a)        \
    X(VERBOSITY, 0x1b)       \
    X(TOUCH, 0x1c)           \
    X(GAT, 0x1d)             \
    X(GATQ, 0x1e)            \
    X(SASL_LIST_MECHS, 0x20) \
    X(SASL_AUTH, 0x21)       \
    X(SASL_STEP, 0x22)       \
    X(GATK, 0x23)            \
    X(GATKQ, 0x24)

typedef enum {
#define MR_BIN_OP_ENUM(name, code) MR_BIN_OP_##name = code,
    MR_BIN_OPCODES(MR_BIN_OP_ENUM)
#undef MR_BIN_OP_ENUM
} mr_bin_opcode;

/* X(name, status, body text of an error response). The texts are memcached
 * 1.6's (write_bin_error); memcached never sends the statuses from 0x83 on,
 * so their texts are memrelay's, named after the status. */
#define MR_BIN_STATUSES(X)                                                    \
    X(SUCCESS, 0x0000, "")                                                    \
    X(KEY_ENOENT, 0x0001, "Not found")                                        \
    X(KEY_EEXISTS, 0x0002, "Data exists for key.")                            \
    X(E2BIG, 0x0003, "Too large.")                                            \
    X(EINVAL, 0x0004, "Invalid arguments")                                    \
    X(NOT_STORED, 0x0005, "Not stored.")                                      \
    X(DELTA_BADVAL, 0x0006, "Non-numeric server-side value for incr or decr") \
    X(AUTH_ERROR, 0x0020, "Auth failure.")                                    \
    X(AUTH_CONTINUE, 0x0021, "")                                              \
    X(UNKNOWN_COMMAND, 0x0081, "Unknown command")                             \
    X(ENOMEM, 0x0082, "Out of memory")                                        \
    X(NOT_SUPPORTED, 0x0083, "Not supported")                                 \
    X(EINTERNAL, 0x0084, "Internal error")                                    \
    X(EBUSY, 0x0085, "Busy")                                                  \
    X(ETMPFAIL, 0x0086, "Temporary failure")

typedef enum {
#define MR_BIN_STATUS_ENUM(name, code, text) MR_BIN_##name = code,
    MR_BIN_STATUSES(MR_BIN_STATUS_ENUM)
#undef MR_BIN_STATUS_ENUM
} mr_bin_status;

/* memcached's body text for an error status ("" for SUCCESS and unknown ones). */
const char *mr_bin_status_text(mr_bin_status status);

/* What a request does, shared by its quiet and non-quiet opcodes. */
typedef enum {
    MR_BIN_KIND_UNKNOWN, /* not an opcode memcached 1.6 serves */
    MR_BIN_KIND_GET,     /* GET GETQ GETK GETKQ GAT GATQ GATK GATKQ */
    MR_BIN_KIND_TOUCH,   /* TOUCH: GAT without the value */
    MR_BIN_KIND_STORE,   /* SET ADD REPLACE (+Q) */
    MR_BIN_KIND_CONCAT,  /* APPEND PREPEND (+Q) */
    MR_BIN_KIND_DELETE,  /* DELETE DELETEQ */
    MR_BIN_KIND_ARITH,   /* INCREMENT DECREMENT (+Q) */
    MR_BIN_KIND_NOOP,
    MR_BIN_KIND_VERSION,
    MR_BIN_KIND_QUIT,  /* QUIT QUITQ */
    MR_BIN_KIND_FLUSH, /* FLUSH FLUSHQ */
    MR_BIN_KIND_STAT,
    MR_BIN_KIND_SASL_LIST,
    MR_BIN_KIND_SASL_AUTH, /* SASL_AUTH SASL_STEP */
} mr_bin_kind;

/* Where a request goes (see the contract above). */
typedef enum {
    MR_BIN_CLASS_KEYED,      /* one meta command to the key's server */
    MR_BIN_CLASS_BROADCAST,  /* flush_all to every server */
    MR_BIN_CLASS_ANY_SERVER, /* version to one server */
    MR_BIN_CLASS_LOCAL,      /* answered by memrelay */
} mr_bin_class;

/* ---- parsing (binary.c) ---- */

typedef enum {
    MR_BIN_NEED_MORE, /* read until `need` bytes are buffered, then call again */
    MR_BIN_OK,        /* one complete, valid request */
    MR_BIN_ERROR,     /* answer (when `reply`), then do what `after` says */
} mr_bin_parse_status;

/* What memcached does after an error response. */
typedef enum {
    MR_BIN_AFTER_CONTINUE, /* drop `consumed` bytes, go on with the next request */
    MR_BIN_AFTER_SWALLOW,  /* drop `consumed` bytes, then discard `swallow` more */
    MR_BIN_AFTER_CLOSE,    /* close once the replies already due are written */
} mr_bin_after;

/* The connection's side of parsing. */
typedef struct {
    uint32_t item_size_max; /* memcached -I (the pool's item_size_max); 0: 1 MiB */
    uint32_t max_request;   /* memrelay's bound on the bytes of one buffered request; 0: none
                               beyond memcached's own (header+extras+key <= 16 KiB, value
                               <= item_size_max). A value past it is refused as too large. */
    bool sasl;              /* SASL is on (the pool has auth_file), as memcached -S */
    bool authenticated;     /* this connection has authenticated (meaningful with sasl) */
} mr_bin_opts;

/* The 24-byte header, in host byte order. */
typedef struct {
    uint8_t magic;
    uint8_t opcode;
    uint16_t keylen;
    uint8_t extlen;
    uint8_t datatype; /* ignored, as memcached ignores it */
    uint16_t vbucket; /* ignored, as memcached ignores it */
    uint32_t bodylen; /* extras + key + value */
    uint32_t opaque;  /* echoed in the response */
    uint64_t cas;
} mr_bin_header;

typedef struct {
    mr_bin_header h; /* valid once 24 bytes were there (not for NEED_MORE before that) */
    mr_bin_kind kind;
    /* OK (and the key for ERROR once header, extras and key were there):
     * pointers into the parsed buffer, valid while those bytes stay put. */
    const uint8_t *extras; /* h.extlen bytes */
    const char *key;       /* h.keylen bytes */
    const char *value;     /* value_len bytes: SET family, APPEND/PREPEND, SASL data */
    uint32_t value_len;
    /* OK and ERROR: bytes of the input this request accounts for (the whole
     * request; for TOUCH, GAT*, STAT only header, extras and key, because
     * memcached never reads the rest of their body: it parses those bytes
     * as the next request). */
    uint32_t consumed;
    uint32_t need; /* NEED_MORE: total bytes needed */
    /* ERROR only. */
    bool reply; /* memcached answers (false: it closes silently) */
    mr_bin_status status;
    mr_bin_after after;
    uint32_t swallow;
    bool error_unlinks_key; /* a SET whose value is too large: memcached also unlinks the key */
} mr_bin_request;

/* Parse the request at the start of buf[0..len), applying memcached 1.6's
 * checks in its order: magic (else silent close), header+extras+key within
 * its read buffer (else silent close), key and extras within the body
 * ("Unknown command", close), authentication when `sasl` (only SASL_* and
 * VERSION pass; "Auth failure.", close), key <= 250 ("Invalid arguments",
 * close), a known opcode ("Unknown command", and memcached then discards
 * the body length again past extras and key: its quirk, kept), the opcode's
 * extras/key/body lengths ("Invalid arguments", close), SASL off ("Unknown
 * command", value swallowed), and a value too large for an item ("Too large.",
 * value swallowed; none when the length reads negative as a 32-bit int). */
mr_bin_parse_status mr_bin_parse(const char *buf, size_t len, const mr_bin_opts *opts, mr_bin_request *out);

/* Name of an opcode ("GETKQ"), or NULL for one not in MR_BIN_OPCODES. */
const char *mr_bin_opcode_name(uint8_t opcode);
/* The opcode's kind, and its non-quiet twin (the opcode itself when not quiet). */
mr_bin_kind mr_bin_kind_of(uint8_t opcode);
uint8_t mr_bin_base_opcode(uint8_t opcode);
bool mr_bin_is_quiet(uint8_t opcode);

/* ---- request -> meta (binary_meta.c) ---- */

/* Longest line mr_bin_translate() writes (a 250-byte key and every number
 * at its widest fit well within it). */
#define MR_BIN_META_LINE_MAX 512u

/* What the reply translator needs to know about its request. */
typedef struct {
    uint8_t opcode; /* as received (quiet or not): echoed in the response */
    mr_bin_kind kind;
    bool quiet;         /* quiet opcode: see mr_bin_translate_reply() */
    bool wants_key;     /* GETK GETKQ GATK GATKQ: the key goes back in hits and misses */
    uint16_t ns_status; /* the status meta NS means here: an ADD finds the key (EEXISTS), a
                           REPLACE misses it (ENOENT), anything else NOT_STORED */
    uint32_t opaque;
    uint16_t key_len;
    char key[MR_BIN_KEY_MAX]; /* the key's raw bytes (for STAT: the group asked for) */
} mr_bin_plan;

typedef struct {
    mr_bin_class cls;
    size_t line_len; /* bytes written to the caller's buffer ("\r\n" included) */
    bool has_data;   /* after the line, send `data` (data_len bytes, maybe 0) then "\r\n" */
    const char *data;
    uint32_t data_len;
} mr_bin_meta;

/* Fill `plan` for a request that parsed OK and write its meta command to
 * out (cap >= MR_BIN_META_LINE_MAX): GET family `mg <key> v f c`, GAT family
 * `mg <key> v f c T<exptime>`, TOUCH `mg <key> f c T<exptime>`, SET/ADD/
 * REPLACE `ms <key> <len> F<flags> T<exptime> M<S|E|R>` (a non-zero CAS
 * makes any of them `MS C<cas>`: memcached turns a binary store with a CAS
 * into a CAS store), APPEND/PREPEND `ms <key> <len> MA|MP [C<cas>]`, all
 * with `c`; DELETE `md <key> [C<cas>]`; INCREMENT/DECREMENT `ma <key>
 * [N<exptime> J<initial>] D<delta> MI|MD [C<cas>] v c` (no N when the
 * exptime is 0xffffffff: binary's "do not create"); FLUSH `flush_all
 * [<exptime>]`; VERSION `version`; NOOP `mn`; STAT, QUIT, SASL_*: no line
 * (LOCAL). A key that is not plain printable text is sent as base64 with
 * `b`. Exptimes over 2^31-1 are sent as 2147483647: memcached reads text
 * exptimes as signed 32-bit numbers, and would expire such an item at once.
 * Returns MR_BIN_SUCCESS, or the status to answer locally instead
 * (MR_BIN_NOT_SUPPORTED: a key of more than 186 bytes that is not plain
 * text has no meta spelling; MR_BIN_EINTERNAL: cap too small). */
mr_bin_status mr_bin_translate(const mr_bin_request *req, char *out, size_t cap, mr_bin_meta *meta,
                               mr_bin_plan *plan);

/* Write a key as a meta command carries it: raw when every byte is printable
 * ASCII other than space (or >= 0x80), else base64 (*base64 set). Returns the
 * length written, or 0 when it does not fit in cap or in meta's 250 bytes. */
size_t mr_bin_meta_key(const char *key, size_t len, char *out, size_t cap, bool *base64);

/* ---- meta reply -> binary response (binary_reply.c) ---- */

/* Bytes of the response written to the caller's buffer at most: header,
 * extras, key and a bounded error text (the value is never copied). */
#define MR_BIN_REPLY_HEAD_MAX (MR_BIN_HEADER_LEN + 8u + MR_BIN_KEY_MAX + 256u)

typedef struct {
    bool suppressed; /* a quiet request's silent outcome: send nothing */
    mr_bin_status status;
    size_t head_len;   /* bytes written to the caller's buffer */
    const char *value; /* then send these bytes (a hit's value, pointing into the reply) */
    uint32_t value_len;
} mr_bin_reply;

/* Translate one meta reply (line: its first line with "\r\n"; data: a VA's
 * data block without its "\r\n") into the binary response. Statuses: VA/HD
 * success; EN a miss (KEY_ENOENT; for K opcodes the key is the body, as
 * memcached sends it); NF KEY_ENOENT; EX KEY_EEXISTS; NS plan->ns_status;
 * "CLIENT_ERROR cannot increment or decrement non-numeric value"
 * DELTA_BADVAL; "SERVER_ERROR object too large for cache" E2BIG; "SERVER_ERROR
 * out of memory..." ENOMEM; memrelay's own "SERVER_ERROR timeout",
 * "... backend unavailable", "... connection refused" ETMPFAIL (the request
 * may succeed if retried), "... backend queue full" EBUSY, and any other
 * error EINTERNAL with the error's text as the body; "CLIENT_ERROR flush_all
 * not allowed" AUTH_ERROR (what memcached -F answers a binary FLUSH). A reply
 * that does not fit the request is EINTERNAL. Quiet requests: a GETQ/GETKQ/
 * GATQ/GATKQ miss and any other quiet request's success are suppressed;
 * errors never are. */
void mr_bin_translate_reply(const mr_bin_plan *plan, const char *line, size_t line_len, const char *data,
                            uint32_t data_len, char *out, size_t cap, mr_bin_reply *r);

/* The same from an element of mr_reply_next() starting at buf (VA or LINE;
 * anything else is EINTERNAL). */
void mr_bin_translate_elem(const mr_bin_plan *plan, const char *buf, const mr_reply_elem *e, char *out,
                           size_t cap, mr_bin_reply *r);

/* Builders. Each writes one response to out and returns its length, or 0 if
 * cap is too small. */

/* Any response: magic 0x81, datatype 0. */
typedef struct {
    uint8_t opcode;
    uint16_t status;
    uint32_t opaque;
    uint64_t cas;
    const void *extras;
    uint8_t extlen;
    const char *key;
    uint16_t keylen;
    const char *body; /* after extras and key */
    uint32_t bodylen;
} mr_bin_response;
size_t mr_bin_build(const mr_bin_response *r, char *out, size_t cap);

/* The response to a request that failed to parse (req->reply): status and
 * memcached's text, the request's opcode and opaque. */
size_t mr_bin_error_reply(const mr_bin_request *req, char *out, size_t cap);
/* A status with `text` (NULL: memcached's text for it) for this plan's request. */
size_t mr_bin_status_reply(const mr_bin_plan *plan, mr_bin_status status, const char *text, char *out,
                           size_t cap);
/* Success with no body: NOOP, QUIT, FLUSH. */
size_t mr_bin_ok_reply(const mr_bin_plan *plan, char *out, size_t cap);
/* VERSION: the version text as the body. */
size_t mr_bin_version_reply(const mr_bin_plan *plan, const char *version, size_t len, char *out, size_t cap);
/* SASL_LIST_MECHS: "PLAIN". */
size_t mr_bin_sasl_list_reply(const mr_bin_plan *plan, char *out, size_t cap);

/* STAT: convert memrelay's text stats reply ("STAT <name> <value>\r\n"...
 * "END\r\n") into memcached's packets, one per stat (key the name, value the
 * value, CAS 0) ended by an empty one; "RESET\r\n" is the empty one alone
 * (memcached's "reset"); "ERROR\r\n" (an unknown group) is KEY_ENOENT "Not
 * found". Returns the bytes the packets take; they are written only when
 * that is <= cap (call with cap 0 to size the buffer). */
size_t mr_bin_stats_reply(const mr_bin_plan *plan, const char *text, size_t len, char *out, size_t cap);

/* ---- SASL PLAIN (binary_sasl.c) ---- */

/* PLAIN's message (RFC 4616): authzid NUL authcid NUL passwd. Fails unless
 * there are exactly two NULs, or when the authzid is neither empty nor the
 * authcid (Cyrus SASL, which memcached uses, refuses acting for another
 * user). On success the spans point into data. */
bool mr_sasl_plain_parse(const char *data, size_t len, const char **user, size_t *ulen, const char **pass,
                         size_t *plen);

/* Where a connection's SASL exchange is (zero-initialise). */
typedef enum {
    MR_BIN_SASL_IDLE,     /* nothing started, or the last start failed */
    MR_BIN_SASL_STEPPING, /* SASL_AUTH PLAIN came without data: credentials expected in a STEP */
    MR_BIN_SASL_DONE,     /* the exchange completed (a further STEP fails) */
} mr_bin_sasl_state;

/* Outcome of a SASL_AUTH/SASL_STEP request. */
typedef struct {
    mr_bin_status status; /* SUCCESS ("Authenticated"), AUTH_CONTINUE (empty) or AUTH_ERROR */
    bool authenticated;   /* the connection's new authentication state */
    bool counts;          /* memcached counts it in auth_cmds (all but AUTH_CONTINUE) */
} mr_bin_sasl_result;

/* Run one SASL_AUTH/SASL_STEP request (parsed OK with opts->sasl) as
 * memcached -S with Cyrus PLAIN does, measured: every such request first
 * drops the connection's authentication; SASL_AUTH needs the mechanism
 * PLAIN (any case) and then either checks the data's credentials against
 * `table` (mr_auth_check), or, with no data, answers AUTH_CONTINUE and waits
 * for a SASL_STEP carrying them; a failed STEP keeps waiting; a STEP at any
 * other time fails. */
void mr_bin_sasl(mr_bin_sasl_state *state, const mr_bin_request *req, const mr_auth_table *table,
                 mr_bin_sasl_result *out);

/* The response to a SASL_AUTH/SASL_STEP outcome. */
size_t mr_bin_sasl_reply(const mr_bin_plan *plan, const mr_bin_sasl_result *res, char *out, size_t cap);

/* ---- base64 (base64_encode.c) ---- */

/* Standard base64 with '=' padding. Returns the length written (4 * ceil(len
 * / 3)), or 0 if cap is too small. The decoder is mr_base64_decode(), in
 * ascii.h. */
size_t mr_base64_encode(const char *in, size_t len, char *out, size_t cap);

#endif
