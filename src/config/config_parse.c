/* config_parse.c: the YAML document -> mr_config, one key at a time.
 *
 * We load the file with libyaml's document API (so every node keeps its
 * start mark) and walk it: top-level map of pool name -> pool map, plus
 * the reserved `memrelay` map. Each pool key has one row in pool_keys[]
 * naming its parser and, for plain numbers and booleans, the field and
 * range. Checks that need the whole file (routes, reachability, duplicate
 * listeners) are left to config_validate.c.
 */
#include "config_internal.h"
#include "memrelay/log.h"

#include "memrelay/auth.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define PORT_MAX 65535
#define WEIGHT_MAX 65535
#define UNIX_PATH_MAX 107                  /* sun_path holds 108 bytes including the NUL */
#define MR_LISTEN_DEFAULT_HOST "127.0.0.1" /* a listen address without a host */
#define ITEM_SIZE_MIN 1024u
#define ITEM_SIZE_MAX (1024u * 1024u * 1024u)
#define LOG_PATH_MAX 4095 /* PATH_MAX less the NUL */

typedef struct {
    mr_conf_ctx *ctx;
    yaml_document_t *doc;
} parser;

/* ---- nodes and scalars ---- */

static mr_conf_pos pos_of(const yaml_node_t *n)
{
    return (mr_conf_pos){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static const char *kind_of(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE    ? "a map"
           : n->type == YAML_SEQUENCE_NODE ? "a list"
                                           : "a single value";
}

static const char *text_of(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty scalar, `~` or `null`: YAML's null (`key:` with nothing after). */
static bool is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(text_of(n), nulls[i]) == 0)
            return true;
    return false;
}

/* The text of a single value, or NULL after reporting why there is none.
 * `what` names it in messages, e.g. "'hash' in pool 'alpha'". */
static const char *scalar(parser *ps, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        mr_conf_fail(ps->ctx, pos_of(n), "%s must be a single value, not %s", what, kind_of(n));
        return NULL;
    }
    if (is_null(n)) {
        mr_conf_fail(ps->ctx, pos_of(n), "%s has no value", what);
        return NULL;
    }
    if (strlen(text_of(n)) != n->data.scalar.length) {
        mr_conf_fail(ps->ctx, pos_of(n), "%s contains a NUL character", what);
        return NULL;
    }
    return text_of(n);
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static char *dup_n(parser *ps, const char *s, size_t len)
{
    char *d = strndup(s, len);
    if (d == NULL)
        mr_conf_fail(ps->ctx, (mr_conf_pos){0, 0}, "out of memory");
    return d;
}

static void *alloc_n(parser *ps, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        mr_conf_fail(ps->ctx, (mr_conf_pos){0, 0}, "out of memory");
    return p;
}

/* Plain decimal: digits only, no sign, no leading zero (YAML 1.1 would read
 * 010 as octal 8), at most `max`. 0 ok, -1 not a plain decimal, -2 too big. */
static int decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || (s[0] == '0' && len > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -2;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return v > max ? -2 : 0;
}

static int get_uint(parser *ps, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    const char *s = scalar(ps, n, what);
    if (s == NULL)
        return -1;
    int rc = decimal(s, strlen(s), max, out);
    if (rc == -1)
        return mr_conf_fail(ps->ctx, pos_of(n),
                            "%s must be a plain non-negative decimal integer (no sign, leading zero or "
                            "suffix), got '%s'",
                            what, s);
    if (rc == -2 || *out < min)
        return mr_conf_fail(ps->ctx, pos_of(n), "%s must be between %llu and %llu, got %s", what,
                            (unsigned long long)min, (unsigned long long)max, s);
    return 0;
}

/* YAML 1.1 booleans, exactly as that spec spells them. */
static const struct {
    const char *word;
    bool value;
} bool_words[] = {
    {"true", true},   {"True", true},   {"TRUE", true}, {"yes", true}, {"Yes", true}, {"YES", true},
    {"on", true},     {"On", true},     {"ON", true},   {"y", true},   {"Y", true},   {"false", false},
    {"False", false}, {"FALSE", false}, {"no", false},  {"No", false}, {"NO", false}, {"off", false},
    {"Off", false},   {"OFF", false},   {"n", false},   {"N", false},
};

/* 0 after storing the value in *out, or -1 (error recorded) leaving *out alone. Every failure
 * returns the literal -1, not mr_conf_fail()'s result: the compiler cannot see into config.c, and
 * seeing -1 here lets it prove that a caller reading *out after a 0 reads a stored value. */
static int get_bool(parser *ps, const yaml_node_t *n, const char *what, bool *out)
{
    const char *s = scalar(ps, n, what);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(bool_words) / sizeof(bool_words[0]); i++) {
        if (strcmp(s, bool_words[i].word) == 0) {
            *out = bool_words[i].value;
            return 0;
        }
    }
    mr_conf_fail(ps->ctx, pos_of(n), "%s must be true or false (or yes/no, on/off), got '%s'", what, s);
    return -1;
}

/* The earlier key equal to pair `cur`'s key in mapping `map`, or NULL. */
static const yaml_node_t *earlier_key(parser *ps, const yaml_node_t *map, const yaml_node_pair_t *cur)
{
    const char *k = text_of(yaml_document_get_node(ps->doc, cur->key));
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < cur; p++) {
        const yaml_node_t *other = yaml_document_get_node(ps->doc, p->key);
        if (other->type == YAML_SCALAR_NODE && strcmp(text_of(other), k) == 0)
            return other;
    }
    return NULL;
}

/* Check a map's key: a single value, not repeated. Returns its text or NULL. */
static const char *map_key(parser *ps, const yaml_node_t *map, const yaml_node_pair_t *pair,
                           const char *where)
{
    const yaml_node_t *key = yaml_document_get_node(ps->doc, pair->key);
    if (key->type != YAML_SCALAR_NODE || is_null(key)) {
        mr_conf_fail(ps->ctx, pos_of(key), "keys %s must be names, not %s", where,
                     key->type == YAML_SCALAR_NODE ? "empty" : kind_of(key));
        return NULL;
    }
    const yaml_node_t *first = earlier_key(ps, map, pair);
    if (first != NULL) {
        mr_conf_fail(ps->ctx, pos_of(key), "duplicate key '%s' %s (first at line %d)", text_of(key), where,
                     pos_of(first).line);
        return NULL;
    }
    return text_of(key);
}

/* Edit distance, to suggest the key a typo meant. */
static size_t distance(const char *a, const char *b)
{
    size_t lb = strlen(b), row[64];
    if (lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1] != '\0'; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ---- addresses ---- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* Split `host:port` or `[v6]:port` (len bytes of s). On success returns
 * NULL and sets the host's offset and length (brackets excluded) and the
 * port; otherwise returns what is wrong. An unbracketed IPv6 literal is
 * accepted as twemproxy does: the port is after the last colon. */
static const char *split_hostport(const char *s, size_t len, size_t *host_off, size_t *host_len,
                                  uint16_t *port)
{
    const char *colon = memrchr(s, ':', len);
    if (colon == NULL)
        return "missing ':port'";
    size_t hl = (size_t)(colon - s), off = 0;
    if (s[0] == '[') {
        if (hl < 2 || s[hl - 1] != ']')
            return "expected [IPv6 address]:port";
        off = 1;
        hl -= 2;
    }
    if (hl == 0)
        return "missing host";

    if (memchr(s + off, ':', hl) != NULL || off == 1) {
        char host[64];
        struct in6_addr a6;
        if (hl >= sizeof(host))
            return "not a valid IPv6 address";
        memcpy(host, s + off, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return off ? "not a valid IPv6 address inside the brackets"
                       : "not a valid address (write IPv6 addresses in brackets, e.g. [::1]:11211)";
    } else {
        for (size_t i = 0; i < hl; i++)
            if (!host_char(s[off + i]))
                return "the host name may hold only letters, digits, '-', '_' and '.'";
    }

    uint64_t p = 0;
    size_t pl = len - (size_t)(colon - s) - 1;
    if (decimal(colon + 1, pl, PORT_MAX, &p) != 0 || p == 0)
        return "the port must be a decimal number from 1 to 65535";
    *host_off = off;
    *host_len = hl;
    *port = (uint16_t)p;
    return NULL;
}

const char *mr_config_admin_addr(const char *text, mr_addr_conf *out)
{
    size_t len = strlen(text), off = 0, hl = 0;
    uint64_t port = 0;
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return "empty address";
    if (has_control(text, len) || memchr(text, ' ', len) != NULL)
        return "unexpected space or control character";
    if (text[0] == '/')
        return "the admin listener takes a TCP address, not a unix socket path";
    const char *host = text;
    if (memchr(text, ':', len) == NULL) {
        /* A bare port: loopback, so nothing is exposed unless a host is written. */
        if (decimal(text, len, PORT_MAX, &port) != 0 || port == 0)
            return "expected host:port, [IPv6]:port or a port from 1 to 65535";
        host = "127.0.0.1";
        hl = strlen(host);
        out->port = (uint16_t)port;
    } else {
        const char *why = split_hostport(text, len, &off, &hl, &out->port);
        if (why != NULL)
            return why;
    }
    if ((out->host = strndup(host + off, hl)) == NULL)
        return "out of memory";
    return NULL;
}

/* An octal permission like 0666 (1 to 4 digits, 0001..0777). */
static bool octal_mode(const char *s, mode_t *out)
{
    size_t len = strlen(s);
    unsigned v = 0;
    if (len == 0 || len > 4)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '7')
            return false;
        v = v * 8 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 0777)
        return false;
    *out = (mode_t)v;
    return true;
}

/* ---- pool keys ---- */

struct pool_key;
typedef int (*pool_key_fn)(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                           const yaml_node_t *v, const struct pool_key *k, const char *what);

struct pool_key {
    const char *name;
    pool_key_fn parse;
    size_t offset;     /* field, for plain numbers and booleans */
    uint64_t min, max; /* range, for plain numbers */
};

static int key_u32(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                   const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    uint64_t n = 0;
    if (get_uint(ps, v, what, k->min, k->max, &n) != 0)
        return -1;
    *(uint32_t *)(void *)((char *)p + k->offset) = (uint32_t)n;
    return 0;
}

static int key_int(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                   const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    uint64_t n = 0;
    if (get_uint(ps, v, what, k->min, k->max, &n) != 0)
        return -1;
    *(int *)(void *)((char *)p + k->offset) = (int)n;
    return 0;
}

static int key_bool(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                    const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    return get_bool(ps, v, what, (bool *)(void *)((char *)p + k->offset));
}

static int key_redis(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                     const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    bool redis;
    if (get_bool(ps, v, what, &redis) != 0)
        return -1;
    if (redis)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "redis pools are not supported: memrelay speaks only the memcached protocol");
    return 0;
}

/* twemproxy keys that only make sense for redis pools. */
static int key_redis_only(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                          const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    return mr_conf_fail(ps->ctx, pos_of(key),
                        "%s is a redis setting; redis pools are not supported: memrelay speaks only the "
                        "memcached protocol",
                        what);
}

static int key_hash(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                    const yaml_node_t *v, const struct pool_key *k, const char *what)
{
#define MR_HASH_WORD(e, name, fn) " " name
    static const char known[] = MR_HASHES(MR_HASH_WORD);
#undef MR_HASH_WORD
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    if (mr_hash_from_name(s, &p->hash) != 0)
        return mr_conf_fail(ps->ctx, pos_of(v), "unknown hash '%s' in pool '%s' (known:%s)", s, p->name,
                            known);
    return 0;
}

static int key_distribution(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                            const yaml_node_t *v, const struct pool_key *k, const char *what)
{
#define MR_DIST_WORD(e, name, ops) " " name
    static const char known[] = MR_DISTS(MR_DIST_WORD);
#undef MR_DIST_WORD
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    if (mr_dist_from_name(s, &p->distribution) != 0)
        return mr_conf_fail(ps->ctx, pos_of(v), "unknown distribution '%s' in pool '%s' (known:%s)", s,
                            p->name, known);
    return 0;
}

static int key_hash_tag(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                        const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    if (v->type != YAML_SCALAR_NODE || is_null(v))
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be two characters in quotes, e.g. hash_tag: \"{}\"",
                            what);
    if (v->data.scalar.length != 2)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be exactly 2 characters (open and close), e.g. \"{}\", got '%s'", what,
                            text_of(v));
    p->has_hash_tag = true;
    memcpy(p->hash_tag, text_of(v), 2);
    return 0;
}

static int key_multiget_errors(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                               const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    if (strcmp(s, "miss") == 0)
        p->multiget_errors = MR_MULTIGET_ERRORS_MISS;
    else if (strcmp(s, "fail") == 0)
        p->multiget_errors = MR_MULTIGET_ERRORS_FAIL;
    else
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be miss or fail, got '%s'", what, s);
    return 0;
}

static int key_write_ack(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                         const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    static const char *const names[] = {"one", "quorum", "all"};
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            p->write_ack = (mr_write_ack)i;
            return 0;
        }
    }
    return mr_conf_fail(ps->ctx, pos_of(v), "%s must be one, quorum or all, got '%s'", what, s);
}

static int key_replicas(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                        const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    uint64_t n = 0;
    if (get_uint(ps, v, what, 1, MR_MAX_REPLICAS, &n) != 0)
        return -1;
    p->replicas = (uint32_t)n;
    p->replicas_line = pos_of(v).line;
    p->replicas_column = pos_of(v).column;
    return 0;
}

static int key_on_rejoin(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                         const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    if (strcmp(s, "flush") == 0)
        p->on_rejoin_quarantine = false;
    else if (strcmp(s, "quarantine") == 0)
        p->on_rejoin_quarantine = true;
    else
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be flush or quarantine, got '%s'", what, s);
    return 0;
}

/* A fraction from 0 to 1 (e.g. 0.5), kept as a whole percentage. */
static int key_fraction(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                        const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    char *end = NULL;
    double f = strtod(s, &end);
    if (end == s || *end != '\0' || !(f >= 0.0 && f <= 1.0))
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be a number from 0 to 1, got '%s'", what, s);
    *(uint32_t *)(void *)((char *)p + k->offset) = (uint32_t)(f * 100.0 + 0.5);
    return 0;
}

/* A list of pool names; resolved by validation. */
static int key_replicate_to(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                            const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    p->replicate_to_line = pos_of(key).line;
    p->replicate_to_column = pos_of(key).column;
    if (v->type != YAML_SEQUENCE_NODE)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be a list of pool names, not %s", what,
                            is_null(v) ? "empty" : kind_of(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0 || n >= 16)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must name 1 to 15 pools", what);
    if ((p->replicate_to_names = alloc_n(ps, n, sizeof(char *))) == NULL ||
        (p->replicate_to = alloc_n(ps, n, sizeof(size_t))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yaml_document_get_node(ps->doc, v->data.sequence.items.start[i]);
        if (item->type != YAML_SCALAR_NODE || is_null(item))
            return mr_conf_fail(ps->ctx, pos_of(item), "%s: each entry must be a pool name", what);
        if ((p->replicate_to_names[i] = dup_n(ps, text_of(item), item->data.scalar.length)) == NULL)
            return -1;
        p->nreplicate_to++;
    }
    return 0;
}

/* Bytes, with memcached -I's suffixes: 2m, 512k. */
static int key_item_size_max(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                             const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    uint64_t unit = 1, n = 0;
    if (len > 0 && (s[len - 1] == 'k' || s[len - 1] == 'K'))
        unit = 1024, len--;
    else if (len > 0 && (s[len - 1] == 'm' || s[len - 1] == 'M'))
        unit = 1024 * 1024, len--;
    int rc = decimal(s, len, ITEM_SIZE_MAX, &n);
    if (rc == -1)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be a plain decimal number of bytes, optionally with k or m, got '%s'",
                            what, s);
    if (rc == -2 || n * unit < ITEM_SIZE_MIN || n * unit > ITEM_SIZE_MAX)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be between %u (1k) and %u (1024m) bytes, got %s",
                            what, ITEM_SIZE_MIN, ITEM_SIZE_MAX, s);
    p->item_size_max = (uint32_t)(n * unit);
    return 0;
}

/* A listen address: `host:port`, `[v6]:port`, or `/path [mode]`, into
 * `addr`. `key` names the setting (listen, tls_listen) in messages. */
static int parse_listen_addr(parser *ps, mr_pool_conf *p, const yaml_node_t *v, const char *what,
                             const char *key, mr_addr_conf *addr)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    mr_conf_pos at = pos_of(v);
    if (has_control(s, len))
        return mr_conf_fail(ps->ctx, at, "%s contains a tab or control character", what);

    if (s[0] == '/') {
        const char *sp = strrchr(s, ' ');
        size_t path_len = len;
        if (sp != NULL) {
            if (!octal_mode(sp + 1, &addr->mode))
                return mr_conf_fail(ps->ctx, at,
                                    "bad mode '%s' for the unix listener of pool '%s': expected an octal "
                                    "permission from 0001 to 0777, e.g. 0666",
                                    sp + 1, p->name);
            path_len = (size_t)(sp - s);
            while (path_len > 0 && s[path_len - 1] == ' ')
                path_len--;
        }
        if (path_len > UNIX_PATH_MAX)
            return mr_conf_fail(ps->ctx, at, "unix socket path of pool '%s' is longer than %d bytes", p->name,
                                UNIX_PATH_MAX);
        addr->is_unix = true;
        addr->host = dup_n(ps, s, path_len);
    } else if (s[0] == ':' || strspn(s, "0123456789") == len) {
        /* A port alone (`22121` or `:22121`): loopback, never every
         * interface, so a forgotten host does not expose the pool. */
        const char *digits = s[0] == ':' ? s + 1 : s;
        uint64_t port = 0;
        if (decimal(digits, strlen(digits), PORT_MAX, &port) != 0 || port == 0)
            return mr_conf_fail(ps->ctx, at, "bad listen address '%s' in pool '%s': %s", s, p->name,
                                "the port must be a decimal number from 1 to 65535");
        addr->port = (uint16_t)port;
        addr->host = dup_n(ps, MR_LISTEN_DEFAULT_HOST, strlen(MR_LISTEN_DEFAULT_HOST));
    } else {
        size_t off, hl;
        const char *why = memchr(s, ' ', len) != NULL
                              ? "unexpected space (a mode follows only a unix socket path)"
                              : split_hostport(s, len, &off, &hl, &addr->port);
        if (why != NULL)
            return mr_conf_fail(ps->ctx, at, "bad %s address '%s' in pool '%s': %s", key, s, p->name, why);
        addr->host = dup_n(ps, s + off, hl);
    }
    return addr->host == NULL ? -1 : 0;
}

static int key_listen(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                      const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    m->listen = pos_of(v);
    if (parse_listen_addr(ps, p, v, what, "listen", &p->listen) != 0)
        return -1;
    p->has_listen = true;
    return 0;
}

/* A second, TLS-only listener of the pool (same address forms as listen). */
static int key_tls_listen(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                          const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    if (parse_listen_addr(ps, p, v, what, "tls_listen", &p->tls_listen) != 0)
        return -1;
    p->has_tls_listen = true;
    return 0;
}

/* A string setting (a file path, a cipher list, a name): one line of
 * printable text, stored at the row's offset. Whether a file is there and
 * readable is checked by the validator, which knows the whole pool. */
static int key_text(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                    const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    if (len == 0)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s is empty", what);
    if (has_control(s, len))
        return mr_conf_fail(ps->ctx, pos_of(v), "%s contains a tab or control character", what);
    char **field = (char **)(void *)((char *)p + k->offset);
    return (*field = dup_n(ps, s, len)) == NULL ? -1 : 0;
}

/* tls_min_version: 1.2 or 1.3 (nothing older is ever accepted). */
static int key_tls_min_version(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                               const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    if (strcmp(s, "1.2") == 0)
        p->tls_min_version = 12;
    else if (strcmp(s, "1.3") == 0)
        p->tls_min_version = 13;
    else
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be 1.2 or 1.3 (older TLS versions are never accepted), got '%s'", what,
                            s);
    return 0;
}

/* One `host:port:weight [name]` or `/path:weight [name]` line, parsed from
 * the end: the name after the last space, the weight after the last colon. */
static int parse_server(parser *ps, const char *s, mr_server_conf *sv, const char *pool)
{
    mr_conf_pos at = {sv->line, sv->column};
    size_t len = strlen(s), alen = len, off = 0, hl;
    const char *why = NULL;

    if ((sv->spec = dup_n(ps, s, len)) == NULL)
        return -1;
    if (has_control(s, len))
        return mr_conf_fail(ps->ctx, at, "bad server '%s' in pool '%s': contains a tab or control character",
                            s, pool);
    const char *sp = strrchr(s, ' ');
    if (sp != NULL) {
        if (sp[1] == '\0')
            return mr_conf_fail(ps->ctx, at, "bad server '%s' in pool '%s': trailing space after the address",
                                s, pool);
        if ((sv->name = dup_n(ps, sp + 1, len - (size_t)(sp + 1 - s))) == NULL)
            return -1;
        alen = (size_t)(sp - s);
        while (alen > 0 && s[alen - 1] == ' ')
            alen--;
        if (alen == 0 || memchr(s, ' ', alen) != NULL)
            return mr_conf_fail(ps->ctx, at, "bad server '%s' in pool '%s': expected host:port:weight [name]",
                                s, pool);
    }

    const char *colon = memrchr(s, ':', alen);
    uint64_t w = 0;
    if (colon == NULL)
        return mr_conf_fail(
            ps->ctx, at,
            "bad server '%s' in pool '%s': expected host:port:weight [name] or /path:weight [name]", s, pool);
    if (decimal(colon + 1, alen - (size_t)(colon + 1 - s), WEIGHT_MAX, &w) != 0 || w == 0)
        return mr_conf_fail(ps->ctx, at,
                            "bad server '%s' in pool '%s': the weight must be a decimal number from "
                            "1 to %d",
                            s, pool, WEIGHT_MAX);
    sv->weight = (uint32_t)w;
    size_t hp = (size_t)(colon - s); /* the address, without the weight */

    if (s[0] == '/') {
        if (hp > UNIX_PATH_MAX)
            return mr_conf_fail(ps->ctx, at,
                                "bad server '%s' in pool '%s': unix socket path longer than %d bytes", s,
                                pool, UNIX_PATH_MAX);
        sv->addr.is_unix = true;
        sv->addr.host = dup_n(ps, s, hp);
        sv->ident = dup_n(ps, s, hp);
    } else if ((why = split_hostport(s, hp, &off, &hl, &sv->addr.port)) != NULL) {
        if (memchr(s, ':', hp) == NULL)
            why = "expected host:port:weight [name]";
        return mr_conf_fail(ps->ctx, at, "bad server '%s' in pool '%s': %s", s, pool, why);
    } else {
        sv->addr.host = dup_n(ps, s + off, hl);
        /* ketama identity: the host as written when the port is memcached's
         * default, else host:port as written (IPv6 brackets included). */
        sv->ident = dup_n(ps, s, sv->addr.port == 11211 ? off + hl + off : hp);
    }
    if (sv->addr.host == NULL || sv->ident == NULL)
        return -1;
    if (sv->name != NULL) {
        free(sv->ident);
        if ((sv->ident = dup_n(ps, sv->name, strlen(sv->name))) == NULL)
            return -1;
    }
    return 0;
}

static int key_servers(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                       const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    if (is_null(v))
        return 0; /* `servers:` with nothing under it: no servers; the validator decides if that is fine */
    if (v->type != YAML_SEQUENCE_NODE)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be a list of 'host:port:weight [name]' lines, not %s", what, kind_of(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if ((p->servers = alloc_n(ps, n, sizeof(*p->servers))) == NULL)
        return -1;

    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yaml_document_get_node(ps->doc, v->data.sequence.items.start[i]);
        mr_server_conf *sv = &p->servers[p->nservers++];
        mr_conf_pos at = pos_of(item);
        sv->line = at.line;
        sv->column = at.column;
        char line_what[320];
        snprintf(line_what, sizeof(line_what), "a server line in pool '%s'", p->name);
        const char *s = scalar(ps, item, line_what);
        if (s == NULL || parse_server(ps, s, sv, p->name) != 0)
            return -1;

        for (size_t j = 0; j < i; j++) {
            const mr_server_conf *o = &p->servers[j];
            if (mr_conf_addr_equal(&o->addr, &sv->addr))
                return mr_conf_fail(ps->ctx, at,
                                    "duplicate server '%s' in pool '%s': same address as '%s' at line %d",
                                    sv->spec, p->name, o->spec, o->line);
            if (sv->name != NULL && o->name != NULL && strcmp(sv->name, o->name) == 0)
                return mr_conf_fail(ps->ctx, at, "duplicate server name '%s' in pool '%s' (also at line %d)",
                                    sv->name, p->name, o->line);
            if (strcmp(sv->ident, o->ident) == 0)
                return mr_conf_fail(
                    ps->ctx, at,
                    "server '%s' in pool '%s' has the same ketama identity '%s' as '%s' at line "
                    "%d; give one of them a name",
                    sv->spec, p->name, sv->ident, o->spec, o->line);
        }
    }
    return 0;
}

/* servers_srv: NAME. The pool's servers are the SRV targets of NAME
 * (discovery.c reads them; the file is parsed again with what it found). */
static int key_servers_srv(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                           const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++)
        if (!host_char(s[i]))
            return mr_conf_fail(ps->ctx, pos_of(v),
                                "%s must be a DNS name (letters, digits, '-', '_' and '.'), e.g. "
                                "_memcache._tcp.memcached.cache.svc.cluster.local, not '%s'",
                                what, s);
    if (len == 0 || len > 253)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be a DNS name of 1 to 253 bytes", what);
    if (p->discovery != MR_SERVERS_STATIC)
        return mr_conf_fail(ps->ctx, pos_of(key), "pool '%s' gives both servers_srv and servers_dns",
                            p->name);
    p->discovery = MR_SERVERS_SRV;
    return (p->discovery_name = dup_n(ps, s, len)) == NULL ? -1 : 0;
}

/* servers_dns: HOST:PORT. One server per A/AAAA address of HOST. */
static int key_servers_dns(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                           const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t off, hl;
    uint16_t port;
    const char *why = split_hostport(s, strlen(s), &off, &hl, &port);
    if (why != NULL)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be host:port, e.g. memcached.cache.svc.cluster.local:11211 (%s)", what,
                            why);
    if (p->discovery != MR_SERVERS_STATIC)
        return mr_conf_fail(ps->ctx, pos_of(key), "pool '%s' gives both servers_srv and servers_dns",
                            p->name);
    p->discovery = MR_SERVERS_DNS;
    p->discovery_port = port;
    return (p->discovery_name = dup_n(ps, s + off, hl)) == NULL ? -1 : 0;
}

/* A discovering pool's servers: the lines DNS gave it (none yet: empty). */
static int add_discovered(parser *ps, mr_pool_conf *p, mr_conf_pos at)
{
    const mr_pool_members *mine = NULL;
    for (size_t i = 0; i < ps->ctx->nmembers && mine == NULL; i++)
        if (strcmp(ps->ctx->members[i].pool, p->name) == 0)
            mine = &ps->ctx->members[i];
    if (mine == NULL || mine->nservers == 0)
        return 0;
    if ((p->servers = alloc_n(ps, mine->nservers, sizeof(*p->servers))) == NULL)
        return -1;
    for (size_t i = 0; i < mine->nservers; i++) {
        mr_server_conf *sv = &p->servers[p->nservers++];
        sv->line = at.line;
        sv->column = at.column;
        sv->source = p->discovery;
        if (parse_server(ps, mine->servers[i], sv, p->name) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(sv->ident, p->servers[j].ident) == 0)
                return mr_conf_fail(ps->ctx, at, "pool '%s': DNS gave '%s' twice", p->name, sv->spec);
    }
    return 0;
}

/* One `{prefix: ..., pool: ...}` map. */
static int parse_route(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *item)
{
    size_t i = p->nroutes++;
    mr_route_conf *r = &p->routes[i];
    char where[320];
    snprintf(where, sizeof(where), "in a route of pool '%s'", p->name);

    if (item->type != YAML_MAPPING_NODE)
        return mr_conf_fail(ps->ctx, pos_of(item),
                            "each route of pool '%s' must be a map {prefix: ..., pool: ...}, not %s", p->name,
                            kind_of(item));
    const yaml_node_t *prefix = NULL, *pool = NULL;
    for (const yaml_node_pair_t *pr = item->data.mapping.pairs.start; pr < item->data.mapping.pairs.top;
         pr++) {
        const char *k = map_key(ps, item, pr, where);
        if (k == NULL)
            return -1;
        const yaml_node_t *val = yaml_document_get_node(ps->doc, pr->value);
        if (strcmp(k, "prefix") == 0)
            prefix = val;
        else if (strcmp(k, "pool") == 0)
            pool = val;
        else
            return mr_conf_fail(ps->ctx, pos_of(yaml_document_get_node(ps->doc, pr->key)),
                                "unknown key '%s' %s (expected prefix and pool)", k, where);
    }
    if (prefix == NULL || pool == NULL)
        return mr_conf_fail(ps->ctx, pos_of(item), "route of pool '%s' has no '%s'", p->name,
                            prefix == NULL ? "prefix" : "pool");

    if (prefix->type != YAML_SCALAR_NODE || is_null(prefix))
        return mr_conf_fail(ps->ctx, pos_of(prefix),
                            "route prefix in pool '%s' must be a string (write \"\" for a catch-all route)",
                            p->name);
    const char *pfx = text_of(prefix);
    size_t plen = prefix->data.scalar.length;
    if (plen > MR_KEY_MAX || has_control(pfx, plen) || memchr(pfx, ' ', plen) != NULL)
        return mr_conf_fail(
            ps->ctx, pos_of(prefix),
            "route prefix '%s' in pool '%s' can never match: memcached keys are at most %u bytes "
            "without spaces or control characters",
            pfx, p->name, MR_KEY_MAX);
    char what[320];
    snprintf(what, sizeof(what), "the target pool of route '%s' in pool '%s'", pfx, p->name);
    const char *target = scalar(ps, pool, what);
    if (target == NULL)
        return -1;

    m->route_prefix[i] = pos_of(prefix);
    m->route_pool[i] = pos_of(pool);
    r->prefix_len = plen;
    if ((r->prefix = dup_n(ps, pfx, plen)) == NULL ||
        (r->pool_name = dup_n(ps, target, strlen(target))) == NULL)
        return -1;
    return 0;
}

static int key_routes(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                      const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    m->routes = pos_of(key);
    if (v->type != YAML_SEQUENCE_NODE)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be a list of {prefix: ..., pool: ...} maps, not %s",
                            what, is_null(v) ? "empty" : kind_of(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if ((p->routes = alloc_n(ps, n, sizeof(*p->routes))) == NULL ||
        (m->route_prefix = alloc_n(ps, n, sizeof(mr_conf_pos))) == NULL ||
        (m->route_pool = alloc_n(ps, n, sizeof(mr_conf_pos))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (parse_route(ps, p, m, yaml_document_get_node(ps->doc, v->data.sequence.items.start[i])) != 0)
            return -1;
    return 0;
}

/* A credentials file (memcached -Y format), loaded now so that a bad file
 * is a configuration error with this key's position, and so that a reload
 * (a new configuration) brings a fresh table. Messages never quote the
 * file's contents. */
static int key_auth_file(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *key,
                         const yaml_node_t *v, const struct pool_key *k, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    mr_auth_error aerr;
    mr_auth_table *t = mr_auth_load(s, &aerr);
    if (t == NULL)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s: credentials file '%s' %s", what, s, aerr.message);
    p->auth = t;
    if ((p->auth_file = dup_n(ps, s, strlen(s))) == NULL)
        return -1;
    return 0;
}

#define FIELD(f) offsetof(mr_pool_conf, f)
static const struct pool_key pool_keys[] = {
    /* twemproxy */
    {"listen", key_listen, 0, 0, 0},
    {"hash", key_hash, 0, 0, 0},
    {"hash_tag", key_hash_tag, 0, 0, 0},
    {"distribution", key_distribution, 0, 0, 0},
    {"timeout", key_u32, FIELD(timeout_ms), 1, INT32_MAX},
    {"backlog", key_int, FIELD(backlog), 1, INT32_MAX},
    {"preconnect", key_bool, FIELD(preconnect), 0, 0},
    {"redis", key_redis, 0, 0, 0},
    {"redis_auth", key_redis_only, 0, 0, 0},
    {"redis_db", key_redis_only, 0, 0, 0},
    {"server_connections", key_u32, FIELD(server_connections), 1, 1024},
    {"auto_eject_hosts", key_bool, FIELD(auto_eject_hosts), 0, 0},
    {"server_retry_timeout", key_u32, FIELD(server_retry_timeout_ms), 1, INT32_MAX},
    {"server_failure_limit", key_u32, FIELD(server_failure_limit), 1, 1000000},
    {"tcpkeepalive", key_bool, FIELD(tcpkeepalive), 0, 0},
    {"client_connections", key_u32, FIELD(client_connections), 0, INT32_MAX},
    {"servers", key_servers, 0, 0, 0},
    /* memrelay additions */
    {"servers_srv", key_servers_srv, 0, 0, 0},
    {"servers_dns", key_servers_dns, 0, 0, 0},
    {"dns_refresh", key_u32, FIELD(dns_refresh_ms), 100, INT32_MAX},
    {"routes", key_routes, 0, 0, 0},
    {"multiget_errors", key_multiget_errors, 0, 0, 0},
    {"item_size_max", key_item_size_max, 0, 0, 0},
    {"replicas", key_replicas, 0, 0, 0},
    {"write_ack", key_write_ack, 0, 0, 0},
    {"read_miss_failover", key_bool, FIELD(read_miss_failover), 0, 0},
    {"replay_queue", key_u32, FIELD(replay_queue), 0, 1000000},
    {"replicate_to", key_replicate_to, 0, 0, 0},
    {"probe_success", key_u32, FIELD(probe_success), 1, 100},
    {"probe_interval", key_u32, FIELD(probe_interval_ms), 0, INT32_MAX},
    {"probe_backoff_max", key_u32, FIELD(probe_backoff_max_ms), 1, INT32_MAX},
    {"max_ejected_fraction", key_fraction, FIELD(max_ejected_pct), 0, 100},
    {"on_rejoin", key_on_rejoin, 0, 0, 0},
    {"client_queue_limit", key_u32, FIELD(client_queue_limit), 1, 1000000},
    {"client_output_limit", key_u32, FIELD(client_output_limit), 4096, INT32_MAX},
    {"client_input_limit", key_u32, FIELD(client_input_limit), 4096, INT32_MAX},
    {"server_queue_limit", key_u32, FIELD(server_queue_limit), 1, 10000000},
    {"client_idle_timeout", key_u32, FIELD(client_idle_timeout_ms), 0, INT32_MAX},
    {"client_output_timeout", key_u32, FIELD(client_output_timeout_ms), 0, INT32_MAX},
    {"client_block_timeout", key_u32, FIELD(client_block_timeout_ms), 0, INT32_MAX},
    {"quarantine_period", key_u32, FIELD(quarantine_ms), 1, INT32_MAX},
    {"warmup_window", key_u32, FIELD(warmup_window_ms), 0, INT32_MAX},
    /* TLS (docs/security.md) */
    {"tls", key_bool, FIELD(tls), 0, 0},
    {"tls_listen", key_tls_listen, 0, 0, 0},
    {"tls_cert", key_text, FIELD(tls_cert), 0, 0},
    {"tls_key", key_text, FIELD(tls_key), 0, 0},
    {"tls_ca", key_text, FIELD(tls_ca), 0, 0},
    {"tls_verify_client", key_bool, FIELD(tls_verify_client), 0, 0},
    {"tls_ciphers", key_text, FIELD(tls_ciphers), 0, 0},
    {"tls_ciphersuites", key_text, FIELD(tls_ciphersuites), 0, 0},
    {"tls_min_version", key_tls_min_version, 0, 0, 0},
    {"server_tls", key_bool, FIELD(server_tls), 0, 0},
    {"server_tls_ca", key_text, FIELD(server_tls_ca), 0, 0},
    {"server_tls_verify", key_bool, FIELD(server_tls_verify), 0, 0},
    {"server_tls_name", key_text, FIELD(server_tls_name), 0, 0},
    {"server_tls_cert", key_text, FIELD(server_tls_cert), 0, 0},
    {"server_tls_key", key_text, FIELD(server_tls_key), 0, 0},
    {"auth_file", key_auth_file, 0, 0, 0},
};
#undef FIELD
#define NPOOL_KEYS (sizeof(pool_keys) / sizeof(pool_keys[0]))
_Static_assert(NPOOL_KEYS <= MR_CONF_MAX_POOL_KEYS, "raise MR_CONF_MAX_POOL_KEYS in config_internal.h");

mr_conf_pos mr_conf_key_pos(const mr_conf_marks *m, const char *key)
{
    for (size_t i = 0; i < NPOOL_KEYS; i++)
        if (strcmp(pool_keys[i].name, key) == 0)
            return m->key_at[i];
    return (mr_conf_pos){0, 0};
}

static void pool_defaults(mr_pool_conf *p)
{
    p->hash = MR_HASH_FNV1A_64;
    p->distribution = MR_DIST_KETAMA;
    p->timeout_ms = 1000;
    p->backlog = 512;
    p->server_connections = 1;
    p->server_retry_timeout_ms = 30000;
    p->server_failure_limit = 2;
    p->client_connections = 0;
    p->multiget_errors = MR_MULTIGET_ERRORS_MISS;
    p->item_size_max = 1048576;
    p->replicas = 1;
    p->write_ack = MR_WRITE_ACK_ONE;
    p->replay_queue = 1024;
    p->probe_success = 2;
    p->probe_interval_ms = 5000;
    p->probe_backoff_max_ms = 30000;
    p->max_ejected_pct = 50;
    p->quarantine_ms = 60000;
    p->warmup_window_ms = 60000;
    p->client_queue_limit = 4096;
    p->client_output_limit = 8u * 1024u * 1024u;
    p->client_input_limit = 8u * 1024u * 1024u;
    p->server_queue_limit = 65536;
    p->client_idle_timeout_ms = 0;
    p->client_output_timeout_ms = 60000;
    p->client_block_timeout_ms = 30000;
    p->tls_min_version = 12;
    p->server_tls_verify = true;
    p->dns_refresh_ms = 30000;
}

static int parse_pool(parser *ps, mr_pool_conf *p, mr_conf_marks *m, const yaml_node_t *map)
{
    char where[300], what[340];
    snprintf(where, sizeof(where), "in pool '%s'", p->name);

    for (const yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        const char *k = map_key(ps, map, pr, where);
        if (k == NULL)
            return -1;
        const yaml_node_t *key = yaml_document_get_node(ps->doc, pr->key);
        const struct pool_key *row = NULL, *near = NULL;
        size_t best = 3; /* suggest keys at most 2 edits away */
        for (size_t i = 0; i < NPOOL_KEYS && row == NULL; i++) {
            size_t d = distance(k, pool_keys[i].name);
            if (d == 0)
                row = &pool_keys[i];
            else if (d < best)
                best = d, near = &pool_keys[i];
        }
        if (row == NULL) {
            if (near != NULL)
                return mr_conf_fail(ps->ctx, pos_of(key), "unknown key '%s' %s (did you mean '%s'?)", k,
                                    where, near->name);
            return mr_conf_fail(ps->ctx, pos_of(key), "unknown key '%s' %s", k, where);
        }
        snprintf(what, sizeof(what), "'%s' %s", k, where);
        m->key_at[row - pool_keys] = pos_of(yaml_document_get_node(ps->doc, pr->value));
        if (row->parse(ps, p, m, key, yaml_document_get_node(ps->doc, pr->value), row, what) != 0)
            return -1;
    }
    if (p->discovery != MR_SERVERS_STATIC) {
        mr_conf_pos at = mr_conf_key_pos(m, p->discovery == MR_SERVERS_SRV ? "servers_srv" : "servers_dns");
        if (p->nservers > 0)
            return mr_conf_fail(ps->ctx, at, "pool '%s' gives both servers and %s: choose one", p->name,
                                p->discovery == MR_SERVERS_SRV ? "servers_srv" : "servers_dns");
        return add_discovered(ps, p, at);
    }
    return 0;
}

/* ---- the reserved top-level `memrelay` map: process-wide settings ---- */

static const char memrelay_where[] = "in the memrelay section";

static int mkey_threads(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    uint64_t n;
    if (get_uint(ps, v, what, 1, 1024, &n) != 0)
        return -1;
    cfg->threads = (int)n;
    return 0;
}

static int mkey_shutdown_timeout(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    uint64_t n;
    if (get_uint(ps, v, what, 0, INT32_MAX, &n) != 0)
        return -1;
    cfg->shutdown_timeout_ms = (uint32_t)n;
    return 0;
}

static int mkey_log_file(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    if (len == 0 || len > LOG_PATH_MAX || has_control(s, len))
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be a file path of 1 to %d bytes without control characters", what,
                            LOG_PATH_MAX);
    free(cfg->log_file);
    return (cfg->log_file = dup_n(ps, s, len)) == NULL ? -1 : 0;
}

static int mkey_log_level(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    int level = mr_log_level_from_name(s);
    if (level < 0)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be error, warn, info, debug or trace, not '%s'",
                            what, s);
    cfg->log_level = level;
    return 0;
}

static int mkey_admin_listen(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    const char *why = mr_config_admin_addr(s, &cfg->admin_listen);
    if (why != NULL)
        return mr_conf_fail(ps->ctx, pos_of(v), "bad admin_listen address '%s' %s: %s", s, memrelay_where,
                            why);
    cfg->has_admin_listen = true;
    ps->ctx->admin_listen = pos_of(v);
    return 0;
}

/* dns_servers: ["127.0.0.1:5353", "[::1]:53", "10.0.0.10"] (port 53 when
 * none is given). */
static int mkey_dns_servers(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be a list of DNS server addresses, not %s", what,
                            kind_of(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > 16)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s: at most 16 servers", what);
    if ((cfg->dns_servers = alloc_n(ps, n ? n : 1, sizeof(char *))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yaml_document_get_node(ps->doc, v->data.sequence.items.start[i]);
        const char *s = scalar(ps, item, what);
        if (s == NULL)
            return -1;
        size_t len = strlen(s), off, hl;
        uint16_t port;
        char with_port[300];
        unsigned char ip[16];
        /* A bare address means port 53. */
        if ((inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1) && len < 256) {
            snprintf(with_port, sizeof(with_port), strchr(s, ':') ? "[%s]:53" : "%s:53", s);
            s = with_port;
            len = strlen(s);
        }
        const char *why = split_hostport(s, len, &off, &hl, &port);
        char host[64];
        if (why == NULL && hl < sizeof(host)) {
            memcpy(host, s + off, hl);
            host[hl] = '\0';
            if (inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1)
                why = "a DNS server must be an IP address (a name would need DNS to find it)";
        }
        if (why != NULL || hl >= sizeof(host))
            return mr_conf_fail(ps->ctx, pos_of(item), "bad DNS server '%s' %s: %s", s, memrelay_where,
                                why ? why : "address too long");
        if ((cfg->dns_servers[cfg->ndns_servers++] = dup_n(ps, s, len)) == NULL)
            return -1;
    }
    return 0;
}

static int mkey_dns_timeout(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    uint64_t n;
    if (get_uint(ps, v, what, 10, 60000, &n) != 0)
        return -1;
    cfg->dns_timeout_ms = (uint32_t)n;
    return 0;
}

/* memory_limit: bytes, with k, m or g (1024-based), e.g. 512m, 2g. Its
 * relation to item_size_max is checked once every pool is read
 * (config_validate.c). */
static int mkey_memory_limit(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what)
{
    const char *s = scalar(ps, v, what);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    uint64_t unit = 1, n = 0;
    char last = len > 0 ? s[len - 1] : 0;
    if (last == 'k' || last == 'K')
        unit = 1024, len--;
    else if (last == 'm' || last == 'M')
        unit = 1024 * 1024, len--;
    else if (last == 'g' || last == 'G')
        unit = 1024 * 1024 * 1024, len--;
    int rc = decimal(s, len, MR_MEMORY_LIMIT_MAX, &n);
    if (rc == -1)
        return mr_conf_fail(ps->ctx, pos_of(v),
                            "%s must be a plain decimal number of bytes, optionally with k, m or g, got '%s'",
                            what, s);
    if (rc == -2 || n * unit < MR_MEMORY_LIMIT_MIN || n * unit > MR_MEMORY_LIMIT_MAX)
        return mr_conf_fail(ps->ctx, pos_of(v), "%s must be between 1m and 1024g bytes, got %s", what, s);
    cfg->memory_limit = n * unit;
    ps->ctx->memory_limit = pos_of(v);
    return 0;
}

static const struct memrelay_key {
    const char *name;
    int (*parse)(parser *ps, mr_config *cfg, const yaml_node_t *v, const char *what);
} memrelay_keys[] = {
    {"threads", mkey_threads},           {"shutdown_timeout", mkey_shutdown_timeout},
    {"log_file", mkey_log_file},         {"log_level", mkey_log_level},
    {"admin_listen", mkey_admin_listen}, {"dns_servers", mkey_dns_servers},
    {"dns_timeout", mkey_dns_timeout},   {"memory_limit", mkey_memory_limit},
};
#define NMEMRELAY_KEYS (sizeof(memrelay_keys) / sizeof(memrelay_keys[0]))

static int parse_memrelay(parser *ps, const yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE)
        return mr_conf_fail(ps->ctx, pos_of(map), "the memrelay section must be a map of settings, not %s",
                            is_null(map) ? "empty" : kind_of(map));
    for (const yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        const char *k = map_key(ps, map, pr, memrelay_where);
        if (k == NULL)
            return -1;
        const struct memrelay_key *row = NULL;
        for (size_t i = 0; i < NMEMRELAY_KEYS && row == NULL; i++)
            if (strcmp(k, memrelay_keys[i].name) == 0)
                row = &memrelay_keys[i];
        if (row == NULL) {
            char known[256] = "";
            for (size_t i = 0, off = 0; i < NMEMRELAY_KEYS && off < sizeof(known); i++)
                off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s", i ? ", " : "",
                                        memrelay_keys[i].name);
            return mr_conf_fail(ps->ctx, pos_of(yaml_document_get_node(ps->doc, pr->key)),
                                "unknown key '%s' %s (known: %s)", k, memrelay_where, known);
        }
        char what[128];
        snprintf(what, sizeof(what), "'%s' %s", k, memrelay_where);
        if (row->parse(ps, ps->ctx->cfg, yaml_document_get_node(ps->doc, pr->value), what) != 0)
            return -1;
    }
    return 0;
}

static int parse_root(parser *ps, const yaml_node_t *root)
{
    mr_conf_ctx *ctx = ps->ctx;
    mr_config *cfg = ctx->cfg;

    if (root == NULL)
        return mr_conf_fail(ctx, (mr_conf_pos){1, 1},
                            "the configuration is empty: expected a map of pool names to pool settings");
    ctx->root = pos_of(root);
    if (root->type != YAML_MAPPING_NODE)
        return mr_conf_fail(ctx, pos_of(root),
                            "the top level must be a map of pool names to pool settings, not %s",
                            kind_of(root));

    size_t cap = (size_t)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
    if ((cfg->pools = alloc_n(ps, cap, sizeof(*cfg->pools))) == NULL ||
        (ctx->marks = alloc_n(ps, cap, sizeof(*ctx->marks))) == NULL)
        return -1;

    for (const yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        const yaml_node_t *key = yaml_document_get_node(ps->doc, pr->key);
        const yaml_node_t *val = yaml_document_get_node(ps->doc, pr->value);
        const char *name = map_key(ps, root, pr, "at the top level");
        if (name == NULL)
            return -1;
        if (strcmp(name, "memrelay") == 0) {
            if (parse_memrelay(ps, val) != 0)
                return -1;
            continue;
        }

        mr_pool_conf *p = &cfg->pools[cfg->npools];
        mr_conf_marks *m = &ctx->marks[cfg->npools];
        cfg->npools++;
        pool_defaults(p);
        mr_conf_pos at = pos_of(key);
        p->line = at.line;
        p->column = at.column;
        if ((p->name = dup_n(ps, name, strlen(name))) == NULL)
            return -1;
        if (val->type != YAML_MAPPING_NODE)
            return mr_conf_fail(ctx, pos_of(val), "pool '%s' must be a map of settings, not %s", name,
                                is_null(val) ? "empty" : kind_of(val));
        if (parse_pool(ps, p, m, val) != 0)
            return -1;
    }
    return 0;
}

/* Does line `line` (0-based) of the text hold an unquoted "[...]:" , the
 * usual cause of a syntax error in these files (an IPv6 address read as a
 * YAML list)? */
static bool bracket_address_on(const char *yaml, size_t len, size_t line)
{
    size_t i = 0;
    for (size_t l = 0; l < line && i < len; i++)
        if (yaml[i] == '\n')
            l++;
    const char *start = yaml + i, *end = memchr(start, '\n', len - i);
    size_t n = end ? (size_t)(end - start) : len - i;
    const char *open = memchr(start, '[', n);
    return open != NULL && memmem(open, n - (size_t)(open - start), "]:", 2) != NULL &&
           memchr(start, '"', (size_t)(open - start)) == NULL &&
           memchr(start, '\'', (size_t)(open - start)) == NULL;
}

/* libyaml's own complaint, placed where it found the problem. */
static int syntax_error(mr_conf_ctx *ctx, const yaml_parser_t *yp, const char *yaml, size_t len)
{
    if (yp->error == YAML_MEMORY_ERROR)
        return mr_conf_fail(ctx, (mr_conf_pos){0, 0}, "out of memory");
    if (yp->error == YAML_READER_ERROR) {
        mr_conf_pos at = {1, 1};
        for (size_t i = 0; i < yp->problem_offset && i < len; i++) {
            if (yaml[i] == '\n')
                at.line++, at.column = 1;
            else if (((unsigned char)yaml[i] & 0xc0) != 0x80)
                at.column++;
        }
        return mr_conf_fail(ctx, at, "not readable as YAML text: %s",
                            yp->problem ? yp->problem : "bad input");
    }
    mr_conf_pos at = {(int)yp->problem_mark.line + 1, (int)yp->problem_mark.column + 1};
    const char *hint =
        bracket_address_on(yaml, len, yp->problem_mark.line) ||
                (yp->context != NULL && bracket_address_on(yaml, len, yp->context_mark.line))
            ? "; a value starting with '[' is a YAML list: quote IPv6 addresses, e.g. \"[::1]:11211:1\""
            : "";
    if (yp->context != NULL)
        return mr_conf_fail(ctx, at, "YAML syntax error: %s (%s at line %d, column %d)%s",
                            yp->problem ? yp->problem : "invalid", yp->context,
                            (int)yp->context_mark.line + 1, (int)yp->context_mark.column + 1, hint);
    return mr_conf_fail(ctx, at, "YAML syntax error: %s%s", yp->problem ? yp->problem : "invalid", hint);
}

int mr_conf_parse(mr_conf_ctx *ctx, const char *yaml, size_t len)
{
    yaml_parser_t yp;
    yaml_document_t doc, extra;
    parser ps = {.ctx = ctx, .doc = &doc};

    if ((ctx->cfg = calloc(1, sizeof(*ctx->cfg))) == NULL)
        return mr_conf_fail(ctx, (mr_conf_pos){0, 0}, "out of memory");
    ctx->cfg->threads = 1;
    ctx->cfg->shutdown_timeout_ms = 10000;
    ctx->cfg->dns_timeout_ms = 2000;
    ctx->cfg->log_level = MR_LOG_INFO;
    ctx->cfg->memory_limit = MR_MEMORY_LIMIT_DEFAULT;
    if (!yaml_parser_initialize(&yp))
        return mr_conf_fail(ctx, (mr_conf_pos){0, 0}, "out of memory");
    yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);

    if (!yaml_parser_load(&yp, &doc)) {
        syntax_error(ctx, &yp, yaml, len);
        yaml_parser_delete(&yp);
        return -1;
    }
    int rc = parse_root(&ps, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);

    /* twemproxy reads one document; a second one is surely a mistake. */
    if (rc == 0) {
        if (!yaml_parser_load(&yp, &extra)) {
            rc = syntax_error(ctx, &yp, yaml, len);
        } else {
            const yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root != NULL)
                rc = mr_conf_fail(ctx, pos_of(root),
                                  "only one YAML document is allowed in a configuration file");
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&yp);
    return rc;
}
