/* test_ascii_admin.c: memcached's admin commands, which memrelay refuses.
 * Lines memcached would refuse get memcached's own refusal; lines it would
 * run get "SERVER_ERROR <cmd> not supported by memrelay"; noreply silences
 * both where memcached allows it.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/ascii.h"

#define R_ERROR "ERROR\r\n"
#define R_FORMAT "CLIENT_ERROR bad command line format\r\n"

static mr_request_head h;

/* reply NULL: memcached sends nothing. */
static void expect(const char *s, const char *reply)
{
    mr_parse_status st = mr_parse_request(s, strlen(s), 1048576, MR_ASCII_DEFAULT_MAX_LINE, &h);
    cr_assert_eq(st, MR_PARSE_ERROR, "'%s': status %d", s, st);
    cr_assert_eq(h.after, MR_AFTER_CONTINUE, "'%s'", s);
    if (reply == NULL)
        cr_assert_null(h.error_reply, "'%s': got %s", s, h.error_reply);
    else
        cr_assert(h.error_reply && strcmp(h.error_reply, reply) == 0, "'%s': got %s, expected %s", s,
                  h.error_reply ? h.error_reply : "(none)", reply);
}

Test(ascii_admin, shutdown_and_refresh_certs_answer_as_a_default_memcached)
{
    expect("shutdown\r\n", "ERROR: shutdown not enabled\r\n");
    expect("shutdown graceful\r\n", "ERROR: shutdown not enabled\r\n");
    cr_assert_eq(h.cmd, MR_CMD_SHUTDOWN);
    expect("refresh_certs\r\n", "Error TLS not enabled\r\n");
}

Test(ascii_admin, cache_memlimit)
{
    expect("cache_memlimit 100\r\n", "SERVER_ERROR cache_memlimit not supported by memrelay\r\n");
    expect("cache_memlimit 100 x\r\n", "SERVER_ERROR cache_memlimit not supported by memrelay\r\n");
    expect("cache_memlimit\r\n", R_ERROR);
    expect("cache_memlimit x\r\n", R_ERROR);
    expect("cache_memlimit -1\r\n", R_ERROR);
    expect("cache_memlimit 100 x y\r\n", R_ERROR);
    expect("cache_memlimit 100 noreply\r\n", NULL);
    expect("cache_memlimit x noreply\r\n", NULL);
}

Test(ascii_admin, slabs)
{
    expect("slabs reassign 1 2\r\n", "SERVER_ERROR slabs not supported by memrelay\r\n");
    expect("slabs reassign -1 2\r\n", "SERVER_ERROR slabs not supported by memrelay\r\n");
    expect("slabs reassign x 2\r\n", R_FORMAT);
    expect("slabs reassign 1 2 noreply\r\n", R_ERROR);
    expect("slabs reassign 1\r\n", R_ERROR);
    expect("slabs automove 2\r\n", "SERVER_ERROR slabs not supported by memrelay\r\n");
    expect("slabs automove 3\r\n", R_ERROR);
    expect("slabs automove x\r\n", R_FORMAT);
    expect("slabs automove 1 noreply\r\n", NULL);
    expect("slabs\r\n", R_ERROR);
    expect("slabs x y\r\n", R_ERROR);
}

Test(ascii_admin, lru_crawler)
{
    const char *no = "SERVER_ERROR lru_crawler not supported by memrelay\r\n";
    expect("lru_crawler crawl all\r\n", no);
    expect("lru_crawler metadump all\r\n", no);
    expect("lru_crawler enable\r\n", no);
    expect("lru_crawler tocrawl 5\r\n", no);
    expect("lru_crawler tocrawl x\r\n", R_FORMAT);
    expect("lru_crawler sleep 1000001\r\n", "CLIENT_ERROR sleep must be one second or less\r\n");
    expect("lru_crawler crawl all noreply\r\n", R_ERROR);
    expect("lru_crawler metadump\r\n", R_ERROR);
    expect("lru_crawler mgdump all\r\n", R_ERROR); /* not in 1.6.18 */
}

Test(ascii_admin, lru_extstore_watch)
{
    expect("lru mode flat\r\n", "SERVER_ERROR lru not supported by memrelay\r\n");
    expect("lru tune 10 10 0.1 2\r\n", "SERVER_ERROR lru not supported by memrelay\r\n");
    expect("lru tune 1 2 x 4\r\n", R_ERROR);
    expect("lru mode x\r\n", R_ERROR);
    expect("lru mode flat noreply\r\n", NULL);
    expect("extstore item_size 10\r\n", "SERVER_ERROR extstore not supported by memrelay\r\n");
    expect("extstore max_frag 0.5\r\n", "SERVER_ERROR extstore not supported by memrelay\r\n");
    expect("extstore recache_threshold 1\r\n", R_ERROR);
    expect("extstore item_size\r\n", R_ERROR);
    expect("watch\r\n", "SERVER_ERROR watch not supported by memrelay\r\n");
    expect("watch fetchers mutations\r\n", "SERVER_ERROR watch not supported by memrelay\r\n");
    expect("watch deletions\r\n", R_ERROR); /* not in 1.6.18 */
    expect("watch fetchers noreply\r\n", NULL);
}
