/* test_config.c: the configuration loader, behaviour by behaviour. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/config.h"

static mr_config *load(const char *yaml, mr_config_error *err)
{
    return mr_config_load_string(yaml, strlen(yaml), "t.yml", err);
}

/* Loading must fail at line:col, with a message starting "t.yml:line:col: "
 * and containing `needle`. */
static void expect_error(const char *yaml, int line, int col, const char *needle)
{
    mr_config_error err;
    mr_config *cfg = load(yaml, &err);
    if (cfg != NULL)
        mr_config_free(cfg);
    cr_assert_null(cfg, "expected an error containing '%s'", needle);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.yml:%d:%d: ", line, col);
    cr_expect_eq(err.line, line, "line %d, message: %s", err.line, err.message);
    cr_expect_eq(err.column, col, "column %d, message: %s", err.column, err.message);
    cr_expect(strncmp(err.message, prefix, strlen(prefix)) == 0, "message '%s' should start with '%s'",
              err.message, prefix);
    cr_expect(strstr(err.message, needle) != NULL, "message '%s' should contain '%s'", err.message, needle);
}

static mr_config *must_load(const char *yaml)
{
    mr_config_error err;
    mr_config *cfg = load(yaml, &err);
    cr_assert_not_null(cfg, "load failed: %s", err.message);
    return cfg;
}

/* conf/examples/nutcracker.yml, found from this file's path. */
static void example_path(char *buf, size_t size)
{
    const char *tail = "tests/unit/test_config.c";
    const char *self = __FILE__;
    size_t len = strlen(self), tl = strlen(tail);
    cr_assert(len >= tl && strcmp(self + len - tl, tail) == 0, "unexpected __FILE__ %s", self);
    snprintf(buf, size, "%.*sconf/examples/nutcracker.yml", (int)(len - tl), self);
}

Test(config, nutcracker_example_loads_with_its_values)
{
    char path[4096];
    example_path(path, sizeof(path));
    mr_config_error err;
    mr_config *cfg = mr_config_load(path, &err);
    cr_assert_not_null(cfg, "%s", err.message);
    cr_assert_str_eq(cfg->path, path);
    cr_assert_eq(cfg->threads, 1);
    cr_assert_eq(cfg->npools, 4);

    const mr_pool_conf *a = &cfg->pools[0];
    cr_assert_str_eq(a->name, "alpha");
    cr_assert(a->has_listen && !a->listen.is_unix);
    cr_assert_str_eq(a->listen.host, "127.0.0.1");
    cr_assert_eq(a->listen.port, 22121);
    cr_assert_eq(a->hash, MR_HASH_FNV1A_64);
    cr_assert(a->has_hash_tag && a->hash_tag[0] == '{' && a->hash_tag[1] == '}');
    cr_assert_eq(a->distribution, MR_DIST_KETAMA);
    cr_assert(a->auto_eject_hosts);
    cr_assert_eq(a->timeout_ms, 400);
    cr_assert_eq(a->server_retry_timeout_ms, 2000);
    cr_assert_eq(a->server_failure_limit, 1);
    cr_assert_eq(a->nservers, 2);
    cr_assert_str_eq(a->servers[0].ident, "127.0.0.1");
    cr_assert_str_eq(a->servers[1].ident, "127.0.0.1:11212");
    cr_assert_eq(a->servers[1].addr.port, 11212);
    cr_assert_null(a->servers[1].name);

    const mr_pool_conf *b = &cfg->pools[1];
    cr_assert_str_eq(b->name, "beta");
    cr_assert_eq(b->hash, MR_HASH_MD5);
    cr_assert_eq(b->backlog, 1024);
    cr_assert(b->preconnect && b->tcpkeepalive && !b->auto_eject_hosts);
    cr_assert_eq(b->server_connections, 2);
    cr_assert_eq(b->nservers, 3);
    cr_assert_str_eq(b->servers[2].name, "cache3");
    cr_assert_str_eq(b->servers[2].ident, "cache3");
    cr_assert_eq(b->servers[2].weight, 2);

    const mr_pool_conf *g = &cfg->pools[2];
    cr_assert_eq(g->hash, MR_HASH_MURMUR);
    cr_assert_eq(g->distribution, MR_DIST_MODULA);
    cr_assert_eq(g->client_connections, 1024);
    cr_assert_str_eq(g->listen.host, "0.0.0.0");
    cr_assert_eq(g->servers[1].weight, 3);

    const mr_pool_conf *d = &cfg->pools[3];
    cr_assert(d->listen.is_unix);
    cr_assert_str_eq(d->listen.host, "/tmp/memrelay-delta.sock");
    cr_assert_eq(d->listen.mode, 0666);
    cr_assert_eq(d->distribution, MR_DIST_RANDOM);
    cr_assert(d->servers[1].addr.is_unix);
    cr_assert_str_eq(d->servers[1].ident, "local");
    mr_config_free(cfg);
}

Test(config, every_default)
{
    mr_config *cfg = must_load("p:\n  listen: 127.0.0.1:22121\n  servers:\n    - 127.0.0.1:11211:1\n");
    cr_assert_eq(cfg->threads, 1);
    cr_assert_eq(cfg->npools, 1);
    const mr_pool_conf *p = &cfg->pools[0];
    cr_assert_eq(p->line, 1);
    cr_assert_eq(p->column, 1);
    cr_assert_eq(p->hash, MR_HASH_FNV1A_64);
    cr_assert(!p->has_hash_tag);
    cr_assert_eq(p->distribution, MR_DIST_KETAMA);
    cr_assert_eq(p->timeout_ms, 1000);
    cr_assert_eq(p->backlog, 512);
    cr_assert(!p->preconnect);
    cr_assert_eq(p->server_connections, 1);
    cr_assert(!p->auto_eject_hosts);
    cr_assert_eq(p->server_retry_timeout_ms, 30000);
    cr_assert_eq(p->server_failure_limit, 2);
    cr_assert(!p->tcpkeepalive);
    cr_assert_eq(p->client_connections, 0);
    cr_assert_eq(p->nroutes, 0);
    cr_assert_eq(p->multiget_errors, MR_MULTIGET_ERRORS_MISS);
    cr_assert_eq(p->item_size_max, 1048576);
    cr_assert_eq(p->listen.mode, 0);
    cr_assert_eq(p->servers[0].weight, 1);
    cr_assert_eq(p->servers[0].line, 4);
    cr_assert_eq(p->servers[0].column, 7);
    cr_assert_str_eq(p->servers[0].spec, "127.0.0.1:11211:1");
    mr_config_free(cfg);
}

Test(config, memrelay_section_sets_threads)
{
    mr_config *cfg =
        must_load("memrelay:\n  threads: 4\np:\n  listen: 127.0.0.1:22121\n  servers: [a:1:1]\n");
    cr_assert_eq(cfg->threads, 4);
    cr_assert_eq(cfg->npools, 1, "the memrelay key is not a pool");
    mr_config_free(cfg);
}

Test(config, memrelay_section_rejects_unknown_keys_and_zero_threads)
{
    expect_error("memrelay:\n  thread: 2\n", 2, 3, "unknown key 'thread' in the memrelay section");
    expect_error("memrelay:\n  threads: 0\n", 2, 12,
                 "'threads' in the memrelay section must be between 1 and");
}

Test(config, booleans_accept_yaml_1_1_words)
{
    mr_config *cfg = must_load(
        "p:\n  listen: 127.0.0.1:1\n  preconnect: yes\n  tcpkeepalive: On\n  auto_eject_hosts: TRUE\n"
        "  redis: no\n  servers: [a:1:1]\n");
    cr_assert(cfg->pools[0].preconnect && cfg->pools[0].tcpkeepalive && cfg->pools[0].auto_eject_hosts);
    mr_config_free(cfg);
    expect_error("p:\n  preconnect: maybe\n", 2, 15, "'preconnect' in pool 'p' must be true or false");
}

Test(config, error_unknown_key)
{
    mr_config_error err;
    cr_assert_null(
        load("alpha:\n  listen: 127.0.0.1:22121\n  servers: [a:1:1]\n\nbeta:\n  listen: 127.0.0.1:2\n    \n"
             "  listn: :3\n",
             &err));
    cr_assert_str_eq(err.message, "t.yml:8:3: unknown key 'listn' in pool 'beta' (did you mean 'listen'?)");
    expect_error("p:\n  listen: 127.0.0.1:1\n  wombat: 3\n", 3, 3, "unknown key 'wombat' in pool 'p'");
}

Test(config, error_bad_hash_name)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  hash: fnv1a64\n", 3, 9,
                 "unknown hash 'fnv1a64' in pool 'p' (known: one_at_a_time");
}

Test(config, error_bad_distribution)
{
    expect_error("p:\n  distribution: vnode\n", 2, 17,
                 "unknown distribution 'vnode' in pool 'p' (known: ketama modula random)");
}

Test(config, error_bad_weight)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n    - a:11211:0\n", 4, 7,
                 "bad server 'a:11211:0' in pool 'p': the weight must be a decimal number from 1 to");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n    - a:11211:x\n", 4, 7, "the weight must be");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n    - a:11211\n", 4, 7, "expected host:port:weight");
}

Test(config, error_redis_true)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  redis: true\n", 3, 10,
                 "redis pools are not supported: memrelay speaks only the memcached protocol");
    expect_error("p:\n  redis_auth: secret\n", 2, 3, "'redis_auth' in pool 'p' is a redis setting");
}

Test(config, error_duplicate_server)
{
    expect_error(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n    - 10.0.0.1:11211:1\n    - 10.0.0.1:11211:2 other\n", 5, 7,
        "duplicate server '10.0.0.1:11211:2 other' in pool 'p': same address as '10.0.0.1:11211:1' at line "
        "4");
    expect_error(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n    - \"[::1]:11211:1\"\n    - \"[0::1]:11211:1 b\"\n", 5, 7,
        "duplicate server");
}

Test(config, error_duplicate_server_name)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n    - a:1:1 one\n    - b:1:1 one\n", 5, 7,
                 "duplicate server name 'one' in pool 'p' (also at line 4)");
}

Test(config, error_same_ketama_identity)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n    - a:1:1 b\n    - b:11211:1\n", 5, 7,
                 "same ketama identity 'b'");
}

Test(config, error_route_to_missing_pool)
{
    expect_error(
        "p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\n  routes:\n    - {prefix: \"s:\", pool: nosuch}\n", 5,
        28, "route 's:' in pool 'p' targets pool 'nosuch', which does not exist");
}

Test(config, error_missing_servers)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n", 1, 1, "pool 'p' has no servers");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers: []\n", 1, 1, "pool 'p' has no servers");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers:\n", 1, 1, "pool 'p' has no servers");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers: a:1:1\n", 3, 12,
                 "'servers' in pool 'p' must be a list");
}

Test(config, error_bad_listen)
{
    expect_error("p:\n  listen: 127.0.0.1\n", 2, 11,
                 "bad listen address '127.0.0.1' in pool 'p': missing ':port'");
    expect_error("p:\n  listen: 127.0.0.1:99999\n", 2, 11,
                 "the port must be a decimal number from 1 to 65535");
    expect_error("p:\n  listen: \"[::1:22121\"\n", 2, 11, "expected [IPv6 address]:port");
    expect_error("p:\n  listen: \"[nothost]:1\"\n", 2, 11, "not a valid IPv6 address");
    expect_error("p:\n  listen: fe80::zz:1\n", 2, 11, "write IPv6 addresses in brackets");
    expect_error("p:\n  listen: 1.2.3.4:1 0666\n", 2, 11, "a mode follows only a unix socket path");
    expect_error("p:\n  listen:\n", 2, 10, "'listen' in pool 'p' has no value");
    expect_error("p:\n  listen: [a, b]\n", 2, 11, "'listen' in pool 'p' must be a single value, not a list");
}

Test(config, error_bad_mode)
{
    expect_error("p:\n  listen: /tmp/p.sock 0999\n", 2, 11,
                 "bad mode '0999' for the unix listener of pool 'p': expected an octal permission");
    expect_error("p:\n  listen: /tmp/p.sock rw\n", 2, 11, "bad mode 'rw'");
    expect_error("p:\n  listen: /tmp/p.sock 01777\n", 2, 11, "bad mode '01777'");
}

Test(config, error_bad_integer)
{
    expect_error(
        "p:\n  timeout: -5\n", 2, 12,
        "'timeout' in pool 'p' must be a plain non-negative decimal integer (no sign, leading zero or "
        "suffix), got '-5'");
    expect_error("p:\n  backlog: 0x10\n", 2, 12,
                 "'backlog' in pool 'p' must be a plain non-negative decimal");
    expect_error("p:\n  timeout: 0400\n", 2, 12, "must be a plain non-negative decimal integer");
    expect_error("p:\n  timeout: 1.5\n", 2, 12, "must be a plain non-negative decimal integer");
    expect_error("p:\n  timeout: 0\n", 2, 12,
                 "'timeout' in pool 'p' must be between 1 and 2147483647, got 0");
    expect_error("p:\n  server_connections: 99999999999999999999999\n", 2, 23, "must be between 1 and 1024");
    expect_error("p:\n  client_connections: 4294967296\n", 2, 23, "must be between 0 and 2147483647");
}

Test(config, error_duplicate_pool_and_key)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\np:\n  listen: 127.0.0.1:2\n", 4, 1,
                 "duplicate key 'p' at the top level (first at line 1)");
    expect_error("p:\n  listen: 127.0.0.1:1\n  hash: md5\n  hash: crc32\n", 4, 3,
                 "duplicate key 'hash' in pool 'p' (first at line 3)");
}

Test(config, error_hash_tag_needs_two_characters)
{
    expect_error("p:\n  hash_tag: \"{\"\n", 2, 13, "'hash_tag' in pool 'p' must be exactly 2 characters");
    expect_error("p:\n  hash_tag: {}\n", 2, 13, "e.g. hash_tag: \"{}\"");
}

Test(config, error_yaml_syntax_has_position)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n   servers: x\n", 3, 11, "YAML syntax error");
    expect_error("p:\n\tlisten: 127.0.0.1:1\n", 2, 1, "YAML syntax error");
    expect_error("p:\n  listen: [::1]:22121\n", 2, 12, "quote IPv6 addresses, e.g. \"[::1]:11211:1\"");
}

Test(config, error_structure)
{
    expect_error("", 1, 1, "the configuration is empty");
    expect_error("- a\n- b\n", 1, 1,
                 "the top level must be a map of pool names to pool settings, not a list");
    expect_error("p: 3\n", 1, 4, "pool 'p' must be a map of settings, not a single value");
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\n---\nq: {}\n", 5, 1,
                 "only one YAML document");
}

Test(config, error_unreachable_pool_without_listen)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\nq:\n  servers: [b:1:1]\n", 4, 1,
                 "pool 'q' has no listen and no route reaches it");
}

Test(config, error_routes_need_listen)
{
    expect_error(
        "p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\nq:\n  servers: [b:1:1]\n  routes:\n    - {prefix: x, "
        "pool: p}\n",
        6, 3, "pool 'q' has routes but no listen");
}

Test(config, error_route_shape)
{
    const char *head = "p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\n  routes:\n";
    char buf[512];
    snprintf(buf, sizeof(buf), "%s    - {prefix: x}\n", head);
    expect_error(buf, 5, 7, "route of pool 'p' has no 'pool'");
    snprintf(buf, sizeof(buf), "%s    - {prefix: x, pool: p, weight: 2}\n", head);
    expect_error(buf, 5, 28, "unknown key 'weight' in a route of pool 'p'");
    snprintf(buf, sizeof(buf), "%s    - {prefix: , pool: p}\n", head);
    expect_error(buf, 5, 16, "write \"\" for a catch-all");
    snprintf(buf, sizeof(buf), "%s    - {prefix: \"a b\", pool: p}\n", head);
    expect_error(buf, 5, 16, "can never match");
    snprintf(buf, sizeof(buf), "%s    - {prefix: x, pool: p}\n    - {prefix: x, pool: p}\n", head);
    expect_error(buf, 6, 16, "duplicate route prefix 'x' in pool 'p' (also at line 5)");
}

Test(config, error_two_pools_on_one_address)
{
    expect_error(
        "p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\nq:\n  listen: 127.0.0.1:1\n  servers: [b:1:1]\n", 5,
        11, "pool 'q' listens on 127.0.0.1:1, as pool 'p' already does (line 2)");
}

Test(config, error_no_pools)
{
    expect_error("memrelay:\n  threads: 2\n", 1, 1, "no pools are defined");
}

Test(config, missing_file_is_a_clear_error)
{
    mr_config_error err;
    cr_assert_null(mr_config_load("/nonexistent/memrelay.yml", &err));
    cr_assert_str_eq(err.message,
                     "/nonexistent/memrelay.yml: cannot open configuration file: No such file or directory");
    cr_assert_eq(err.line, 0);
}

Test(config, ipv6_listen_and_server)
{
    mr_config *cfg = must_load("p:\n  listen: \"[::1]:22121\"\n  servers:\n    - \"[::1]:11211:1\"\n"
                               "    - \"[2001:db8::5]:11212:2\"\n    - ::2:11213:1\n");
    const mr_pool_conf *p = &cfg->pools[0];
    cr_assert_str_eq(p->listen.host, "::1");
    cr_assert_eq(p->listen.port, 22121);
    cr_assert_str_eq(p->servers[0].addr.host, "::1");
    cr_assert_eq(p->servers[0].addr.port, 11211);
    cr_assert_str_eq(p->servers[0].ident, "[::1]");
    cr_assert_str_eq(p->servers[1].addr.host, "2001:db8::5");
    cr_assert_str_eq(p->servers[1].ident, "[2001:db8::5]:11212", "kept as written, brackets included");
    cr_assert_eq(p->servers[1].weight, 2);
    cr_assert_str_eq(p->servers[2].addr.host, "::2", "unbracketed: the port is after the last colon");
    cr_assert_eq(p->servers[2].addr.port, 11213);
    mr_config_free(cfg);
}

Test(config, unix_server_and_listener_with_mode)
{
    mr_config *cfg =
        must_load("p:\n  listen: /run/memrelay/p.sock 0660\n  servers:\n    - /run/mc.sock:3\n"
                  "    - /run/mc2.sock:1 second\nq:\n  listen: /run/q.sock\n  servers: [/run/mc.sock:1]\n");
    const mr_pool_conf *p = &cfg->pools[0];
    cr_assert(p->listen.is_unix);
    cr_assert_str_eq(p->listen.host, "/run/memrelay/p.sock");
    cr_assert_eq(p->listen.mode, 0660);
    cr_assert_eq(p->listen.port, 0);
    cr_assert(p->servers[0].addr.is_unix);
    cr_assert_str_eq(p->servers[0].addr.host, "/run/mc.sock");
    cr_assert_eq(p->servers[0].weight, 3);
    cr_assert_str_eq(p->servers[0].ident, "/run/mc.sock");
    cr_assert_str_eq(p->servers[1].ident, "second");
    cr_assert_eq(cfg->pools[1].listen.mode, 0, "no mode: leave the umask's");
    mr_config_free(cfg);
}

Test(config, ident_rule_for_port_11211_and_names)
{
    mr_config *cfg = must_load(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n    - 127.0.0.2:11211:1\n    - cache.local:11211:1\n"
        "    - 127.0.0.1:21214:1\n    - 127.0.0.1:11211:5 server1\n");
    const mr_pool_conf *p = &cfg->pools[0];
    cr_assert_str_eq(p->servers[0].ident, "127.0.0.2");
    cr_assert_null(p->servers[0].name);
    cr_assert_str_eq(p->servers[1].ident, "cache.local");
    cr_assert_str_eq(p->servers[2].ident, "127.0.0.1:21214");
    cr_assert_str_eq(p->servers[3].ident, "server1", "the weight is never part of the identity");
    cr_assert_str_eq(p->servers[3].name, "server1");
    cr_assert_eq(p->servers[3].weight, 5);
    mr_config_free(cfg);
}

Test(config, routes_sorted_longest_first_and_resolved)
{
    mr_config *cfg = must_load("front:\n  listen: 127.0.0.1:22121\n  routes:\n"
                               "    - {prefix: \"s:\", pool: sessions}\n"
                               "    - {prefix: \"\", pool: main}\n"
                               "    - {prefix: \"sess:hot:\", pool: hot}\n"
                               "    - prefix: \"sess:\"\n      pool: sessions\n"
                               "main:\n  servers: [10.0.0.1:11211:1]\n"
                               "sessions:\n  servers: [10.0.0.2:11211:1]\n"
                               "hot:\n  servers: [10.0.0.3:11211:1]\n");
    const mr_pool_conf *f = &cfg->pools[0];
    cr_assert_eq(f->nservers, 0, "a catch-all route stands in for servers");
    cr_assert_eq(f->nroutes, 4);
    const char *want[] = {"sess:hot:", "sess:", "s:", ""};
    const char *pool[] = {"hot", "sessions", "sessions", "main"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(f->routes[i].prefix, want[i]);
        cr_assert_eq(f->routes[i].prefix_len, strlen(want[i]));
        cr_assert_str_eq(f->routes[i].pool_name, pool[i]);
        cr_assert_str_eq(cfg->pools[f->routes[i].pool_index].name, pool[i]);
    }
    cr_assert_eq(mr_config_pool_index(cfg, "hot"), 3);
    cr_assert_eq(mr_config_pool_index(cfg, "nope"), -1);
    cr_assert(!cfg->pools[1].has_listen);
    mr_config_free(cfg);
}

Test(config, route_target_without_servers_is_an_error)
{
    expect_error("p:\n  listen: 127.0.0.1:1\n  routes: [{prefix: \"\", pool: q}]\nq:\n  hash: md5\n", 4, 1,
                 "pool 'q' has no servers, but routes send keys to it");
}

Test(config, item_size_max_accepts_k_and_m)
{
    mr_config *cfg = must_load("a:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\n  item_size_max: 2m\n"
                               "b:\n  listen: 127.0.0.1:2\n  servers: [a:1:1]\n  item_size_max: 512K\n"
                               "c:\n  listen: 127.0.0.1:3\n  servers: [a:1:1]\n  item_size_max: 1024\n");
    cr_assert_eq(cfg->pools[0].item_size_max, 2 * 1024 * 1024);
    cr_assert_eq(cfg->pools[1].item_size_max, 512 * 1024);
    cr_assert_eq(cfg->pools[2].item_size_max, 1024);
    mr_config_free(cfg);
    expect_error("p:\n  item_size_max: 1023\n", 2, 18,
                 "must be between 1024 (1k) and 1073741824 (1024m) bytes");
    expect_error("p:\n  item_size_max: 2g\n", 2, 18, "optionally with k or m");
    expect_error("p:\n  item_size_max: 1025m\n", 2, 18, "must be between 1024");
}

Test(config, multiget_errors_miss_or_fail)
{
    mr_config *cfg = must_load("p:\n  listen: 127.0.0.1:1\n  servers: [a:1:1]\n  multiget_errors: fail\n");
    cr_assert_eq(cfg->pools[0].multiget_errors, MR_MULTIGET_ERRORS_FAIL);
    mr_config_free(cfg);
    expect_error("p:\n  multiget_errors: ignore\n", 2, 20,
                 "'multiget_errors' in pool 'p' must be miss or fail");
}

Test(config, print_shows_effective_values)
{
    mr_config *cfg = must_load(
        "front:\n  listen: \"[::1]:22121\"\n  hash_tag: \"{}\"\n  servers:\n    - 10.0.0.1:11212:2 one\n"
        "  routes: [{prefix: \"sess:\", pool: sessions}]\n"
        "sessions:\n  servers: [/run/mc.sock:1]\n");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    mr_config_print(out, cfg);
    fclose(out);
    const char *expect[] = {"2 pools",
                            "pool front",
                            "[::1]:22121",
                            "fnv1a_64",
                            "\"{}\"",
                            "ketama",
                            "1000 ms",
                            "30000 ms",
                            "(unlimited)",
                            "1048576 bytes",
                            "10.0.0.1:11212",
                            "weight 2",
                            "ident one",
                            "\"sess:\" -> pool sessions",
                            "pool sessions",
                            "(none: route target only)",
                            "ident /run/mc.sock"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        cr_expect(strstr(text, expect[i]) != NULL, "missing '%s' in:\n%s", expect[i], text);
    free(text);
    mr_config_free(cfg);
}

Test(config, load_string_without_error_struct)
{
    const char *bad = "p: [";
    cr_assert_null(mr_config_load_string(bad, strlen(bad), NULL, NULL));
}

Test(config, listen_without_host_binds_loopback)
{
    static const char *const forms[] = {"\":22121\"", ":22121", "22121", "\"22121\""};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char yaml[160];
        snprintf(yaml, sizeof(yaml), "p:\n  listen: %s\n  servers:\n    - 127.0.0.1:11211:1\n", forms[i]);
        mr_config *cfg = must_load(yaml);
        cr_expect_str_eq(cfg->pools[0].listen.host, "127.0.0.1", "listen %s", forms[i]);
        cr_expect_eq(cfg->pools[0].listen.port, 22121, "listen %s", forms[i]);
        cr_expect(mr_listener_is_protected(&cfg->pools[0]), "listen %s", forms[i]);
        mr_config_free(cfg);
    }
}

Test(config, error_listen_port_alone_out_of_range)
{
    expect_error("p:\n  listen: \":0\"\n", 2, 11, "the port must be a decimal number from 1 to 65535");
    expect_error("p:\n  listen: 70000\n", 2, 11, "the port must be a decimal number from 1 to 65535");
}

Test(config, listener_protection)
{
    static const struct {
        const char *listen;
        bool is_protected;
    } cases[] = {
        {"127.0.0.1:1", true},      {"127.9.9.9:1", true},
        {"\"[::1]:1\"", true},      {"localhost:1", true},
        {"/tmp/x.sock", true},      {"0.0.0.0:1", false},
        {"10.0.0.1:1", false},      {"\"[::]:1\"", false},
        {"cache.example:1", false}, {"\"[::ffff:127.0.0.1]:1\"", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[200];
        snprintf(yaml, sizeof(yaml), "p:\n  listen: %s\n  servers:\n    - 127.0.0.2:11211:1\n",
                 cases[i].listen);
        mr_config *cfg = must_load(yaml);
        cr_expect_eq(mr_listener_is_protected(&cfg->pools[0]), cases[i].is_protected, "listen %s",
                     cases[i].listen);
        mr_config_free(cfg);
    }
}

Test(config, error_server_is_our_own_listener)
{
    expect_error(
        "p:\n  listen: /run/p.sock 0666\n  servers:\n    - 10.0.0.1:11211:1\n    - /run/p.sock:1\n", 5, 7,
        "server '/run/p.sock:1' in pool 'p' is the listen address of pool 'p': requests would loop back");
}

Test(config, print_says_when_a_catch_all_replaces_servers)
{
    mr_config *cfg =
        must_load("f:\n  listen: 127.0.0.1:1\n  routes: [{prefix: \"\", pool: m}]\nm:\n  servers: [a:1:1]\n");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    mr_config_print(out, cfg);
    fclose(out);
    cr_expect(strstr(text, "servers: none") != NULL, "%s", text);
    cr_expect(strstr(text, "\"\" (catch-all) -> pool m") != NULL, "%s", text);
    free(text);
    mr_config_free(cfg);
}

/* ---- memrelay.admin_listen ---- */

#define ADMIN_POOL "p:\n  listen: 127.0.0.1:22121\n  servers: [127.0.0.1:11211:1]\n"

Test(config, admin_listen_is_off_by_default)
{
    mr_config *cfg = must_load(ADMIN_POOL);
    cr_expect_not(cfg->has_admin_listen);
    cr_expect_null(cfg->admin_listen.host);
    mr_config_free(cfg);
}

Test(config, admin_listen_bare_port_means_loopback)
{
    mr_config *cfg = must_load("memrelay:\n  admin_listen: 9180\n" ADMIN_POOL);
    cr_assert(cfg->has_admin_listen);
    cr_expect_str_eq(cfg->admin_listen.host, "127.0.0.1");
    cr_expect_eq(cfg->admin_listen.port, 9180);
    mr_config_free(cfg);
}

Test(config, admin_listen_takes_a_host_or_a_bracketed_ipv6_address)
{
    mr_config *cfg = must_load("memrelay:\n  admin_listen: 0.0.0.0:9180\n" ADMIN_POOL);
    cr_expect_str_eq(cfg->admin_listen.host, "0.0.0.0");
    cr_expect_eq(cfg->admin_listen.port, 9180);
    mr_config_free(cfg);
    cfg = must_load("memrelay:\n  admin_listen: \"[::1]:9181\"\n" ADMIN_POOL);
    cr_expect_str_eq(cfg->admin_listen.host, "::1");
    cr_expect_eq(cfg->admin_listen.port, 9181);
    mr_config_free(cfg);
}

Test(config, admin_listen_bad_values_are_errors_at_their_position)
{
    expect_error("memrelay:\n  admin_listen: 0\n" ADMIN_POOL, 2, 17, "bad admin_listen address '0'");
    expect_error("memrelay:\n  admin_listen: 70000\n" ADMIN_POOL, 2, 17, "a port from 1 to 65535");
    expect_error("memrelay:\n  admin_listen: /run/admin.sock\n" ADMIN_POOL, 2, 17, "not a unix socket path");
    expect_error("memrelay:\n  admin_listen: \"localhost:\"\n" ADMIN_POOL, 2, 17, "the port must be");
    expect_error("memrelay:\n  admin_listen:\n" ADMIN_POOL, 2, 16, "has no value");
}

Test(config, admin_listen_may_not_be_a_pool_listener_or_a_server)
{
    expect_error("memrelay:\n  admin_listen: 127.0.0.1:22121\n" ADMIN_POOL, 2, 17,
                 "admin_listen 127.0.0.1:22121 is the listen address of pool 'p'");
    expect_error("memrelay:\n  admin_listen: 127.0.0.1:11211\n" ADMIN_POOL, 2, 17,
                 "is server '127.0.0.1:11211:1'");
}

Test(config, admin_addr_parser_serves_the_command_line_too)
{
    mr_addr_conf a;
    cr_expect_null(mr_config_admin_addr("9180", &a));
    cr_expect_str_eq(a.host, "127.0.0.1");
    free(a.host);
    cr_expect_null(mr_config_admin_addr("[::1]:9180", &a));
    cr_expect_str_eq(a.host, "::1");
    cr_expect_eq(a.port, 9180);
    free(a.host);
    cr_expect_not_null(mr_config_admin_addr("", &a));
    cr_expect_not_null(mr_config_admin_addr("9180 ", &a));
    cr_expect_not_null(mr_config_admin_addr("[::1:9180", &a));
    cr_expect_null(a.host, "nothing allocated on failure");
}

/* ---- TLS keys (the file checks are exercised in tests/integration/test_tls.py) ---- */

Test(config, tls_defaults_are_off_with_server_verification_on)
{
    mr_config *cfg = must_load("p:\n  listen: 127.0.0.1:22121\n  servers:\n    - 127.0.0.1:11211:1\n");
    const mr_pool_conf *p = &cfg->pools[0];
    cr_assert(!p->tls);
    cr_assert(!p->has_tls_listen);
    cr_assert(!p->tls_verify_client);
    cr_assert_eq(p->tls_min_version, 12);
    cr_assert(!p->server_tls);
    cr_assert(p->server_tls_verify, "verification must be on by default once server_tls is enabled");
    cr_assert_null(p->tls_cert);
    cr_assert_null(p->server_tls_ca);
    mr_config_free(cfg);
}

Test(config, server_tls_with_the_system_store_loads)
{
    mr_config *cfg =
        must_load("p:\n  listen: 127.0.0.1:22121\n  server_tls: true\n  server_tls_name: cache.internal\n"
                  "  servers:\n    - 127.0.0.1:11211:1\n");
    cr_assert(cfg->pools[0].server_tls);
    cr_assert_str_eq(cfg->pools[0].server_tls_name, "cache.internal");
    mr_config_free(cfg);
}

Test(config, tls_listen_needs_a_plain_listen)
{
    expect_error("r:\n  listen: 127.0.0.1:22121\n  routes: [{prefix: \"\", pool: p}]\n"
                 "p:\n  tls_listen: 127.0.0.1:22443\n  servers:\n    - 127.0.0.1:11211:1\n",
                 5, 15, "has tls_listen but no listen");
}

Test(config, tls_listen_may_not_share_an_address)
{
    expect_error(
        "a:\n  listen: 127.0.0.1:22121\n  servers: [127.0.0.1:11211:1]\n"
        "b:\n  listen: 127.0.0.1:22122\n  tls_listen: 127.0.0.1:22121\n  servers: [127.0.0.1:11212:1]\n",
        6, 15, "as pool 'a' already does");
    expect_error(
        "a:\n  listen: 127.0.0.1:22121\n  tls_listen: 127.0.0.1:11211\n  servers: [127.0.0.1:11211:1]\n", 4,
        13, "would loop back");
}

Test(config, tls_settings_without_their_switch_are_errors)
{
    expect_error("p:\n  listen: 127.0.0.1:22121\n  tls_verify_client: true\n  servers: [127.0.0.1:11211:1]\n",
                 3, 22, "no TLS listener");
    expect_error(
        "p:\n  listen: 127.0.0.1:22121\n  server_tls_verify: false\n  servers: [127.0.0.1:11211:1]\n", 3, 22,
        "server_tls is not true");
    expect_error("q:\n  listen: 127.0.0.1:22121\n  routes: [{prefix: \"\", pool: p}]\n"
                 "p:\n  tls: true\n  servers: [127.0.0.1:11211:1]\n",
                 5, 8, "has no listen");
}

Test(config, tls_rules_between_keys)
{
    expect_error("p:\n  listen: 127.0.0.1:22121\n  tls: true\n  tls_min_version: 1.0\n  servers: "
                 "[127.0.0.1:11211:1]\n",
                 4, 20, "must be 1.2 or 1.3");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  server_tls: true\n  servers: [/run/mc.sock:1]\n", 4, 13,
                 "server_tls applies to TCP servers");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  server_tls: true\n  server_tls_verify: false\n"
                 "  server_tls_ca: /etc/ssl/certs/ca-certificates.crt\n  servers: [127.0.0.1:11211:1]\n",
                 5, 18, "no effect with server_tls_verify: false");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  server_tls: true\n  server_tls_key: /x.key\n"
                 "  servers: [127.0.0.1:11211:1]\n",
                 4, 19, "both server_tls_cert and server_tls_key");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  tls_cert: \"\"\n  servers: [127.0.0.1:11211:1]\n", 3, 13,
                 "is empty");
}

/* ---- servers from DNS (servers_srv, servers_dns, dns_*) ---- */

Test(config_dns, servers_srv_pool_loads_empty_until_dns_answers)
{
    mr_config *cfg = must_load(
        "p:\n  listen: 127.0.0.1:22121\n  servers_srv: _memcache._tcp.mc.cache.svc.cluster.local\n");
    cr_assert_eq(cfg->pools[0].discovery, MR_SERVERS_SRV);
    cr_assert_str_eq(cfg->pools[0].discovery_name, "_memcache._tcp.mc.cache.svc.cluster.local");
    cr_assert_eq(cfg->pools[0].nservers, 0);
    cr_assert_eq(cfg->pools[0].dns_refresh_ms, 30000);
    cr_assert(mr_config_discovers(cfg));
    mr_config_free(cfg);
}

Test(config_dns, members_become_the_pools_servers_with_their_source)
{
    const char *yaml =
        "p:\n  listen: 127.0.0.1:22121\n  dns_refresh: 5000\n  servers_srv: _mc._tcp.pool.test\n"
        "q:\n  listen: 127.0.0.1:22122\n  servers_dns: mc.pool.test:11311\n";
    const char *p_lines[] = {"mc-0.pool.test:11211:5", "mc-1.pool.test:11211:1"};
    const char *q_lines[] = {"127.0.0.2:11311:1", "[::1]:11311:1"};
    mr_pool_members m[] = {{"p", p_lines, 2}, {"q", q_lines, 2}};
    mr_config_error err;
    mr_config *cfg = mr_config_load_members(yaml, strlen(yaml), "t.yml", m, 2, &err);
    cr_assert_not_null(cfg, "%s", err.message);
    const mr_pool_conf *p = &cfg->pools[0], *q = &cfg->pools[1];
    cr_assert_eq(p->dns_refresh_ms, 5000);
    cr_assert_eq(p->nservers, 2);
    cr_assert_str_eq(p->servers[0].ident, "mc-0.pool.test", "the ring identity follows the name");
    cr_assert_eq(p->servers[0].weight, 5);
    cr_assert_eq(p->servers[0].source, MR_SERVERS_SRV);
    cr_assert_eq(p->servers[0].line, 4, "points at the servers_srv line");
    cr_assert_eq(q->discovery_port, 11311);
    cr_assert_str_eq(q->discovery_name, "mc.pool.test");
    cr_assert_eq(q->nservers, 2);
    cr_assert_str_eq(q->servers[1].addr.host, "::1");
    cr_assert_eq(q->servers[1].source, MR_SERVERS_DNS);
    cr_assert(cfg->text_len == strlen(yaml) && memcmp(cfg->text, yaml, cfg->text_len) == 0);
    mr_config_free(cfg);
}

Test(config_dns, servers_and_servers_srv_together_are_refused)
{
    expect_error("p:\n  listen: 127.0.0.1:22121\n  servers: [a:1:1]\n  servers_srv: _mc._tcp.x\n", 4, 16,
                 "gives both servers and servers_srv");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  servers_srv: _mc._tcp.x\n  servers_dns: x:1\n", 4, 3,
                 "both servers_srv and servers_dns");
}

Test(config_dns, bad_discovery_values_are_refused_where_written)
{
    expect_error("p:\n  listen: 127.0.0.1:22121\n  servers_dns: mc.pool.test\n", 3, 16, "must be host:port");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  servers_srv: 'a b'\n", 3, 16, "must be a DNS name");
    expect_error("p:\n  listen: 127.0.0.1:22121\n  servers_srv: x\n  dns_refresh: 10\n", 4, 16,
                 "dns_refresh");
}

Test(config_dns, dns_servers_take_addresses_with_or_without_a_port)
{
    mr_config *cfg = must_load("memrelay:\n  dns_servers: [127.0.0.1:5353, 10.0.0.10, '::1', '[::1]:53']\n"
                               "  dns_timeout: 500\np:\n  listen: 127.0.0.1:22121\n  servers: [a:1:1]\n");
    cr_assert_eq(cfg->ndns_servers, 4);
    cr_assert_str_eq(cfg->dns_servers[0], "127.0.0.1:5353");
    cr_assert_str_eq(cfg->dns_servers[1], "10.0.0.10:53");
    cr_assert_str_eq(cfg->dns_servers[2], "[::1]:53");
    cr_assert_str_eq(cfg->dns_servers[3], "[::1]:53");
    cr_assert_eq(cfg->dns_timeout_ms, 500);
    cr_assert(!mr_config_discovers(cfg));
    mr_config_free(cfg);
    expect_error("memrelay:\n  dns_servers: [dns.example.com:53]\n", 2, 17, "must be an IP address");
    expect_error("memrelay:\n  dns_servers: 127.0.0.1\n", 2, 16, "must be a list");
}
