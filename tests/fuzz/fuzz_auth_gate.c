/* fuzz_auth_gate.c: libFuzzer target for the pre-authentication gate.
 *
 * The input is an unauthenticated client's byte stream, walked the way
 * client.c walks it: step after step until the gate wants more bytes or
 * closes. Checks, any violation aborting:
 *   - a reply consumes at least one byte and never more than it was given;
 *   - "need more" asks for more than is there (or for a newline);
 *   - a close happens only past the bounds memcached has;
 *   - STORED only for the one credential in the table.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/auth_gate.h"

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "fuzz_auth_gate: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                                 \
        }                                                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mr_auth_table *t;
    if (t == NULL) {
        mr_auth_error err;
        t = mr_auth_parse("alice:secret\n", 13, &err);
        CHECK(t != NULL);
    }
    const char *p = (const char *)data;
    uint32_t left = size > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)size;
    for (;;) {
        mr_auth_step st;
        mr_auth_gate(p, left, t, &st);
        if (st.action == MR_AUTH_NEED_MORE) {
            CHECK(st.need == 0 ? memchr(p, '\n', left) == NULL : st.need > left);
            return 0;
        }
        if (st.action == MR_AUTH_CLOSE) {
            CHECK(left > 0);
            return 0;
        }
        CHECK(st.consumed > 0 && st.consumed <= left);
        CHECK(st.reply != NULL && strlen(st.reply) >= 2);
        if (st.outcome == MR_AUTH_GRANTED)
            CHECK(st.consumed >= 14 && memmem(p, st.consumed, "alice", 5) &&
                  memmem(p, st.consumed, "secret", 6));
        p += st.consumed;
        left -= st.consumed;
    }
}
