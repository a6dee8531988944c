/* binary_sasl.c: SASL PLAIN over the binary protocol, against the same
 * credentials table as ASCII authentication (auth.c).
 *
 * memcached -S hands SASL to Cyrus SASL; with the PLAIN mechanism, what a
 * client sees was measured on memcached 1.6.18 (tests/unit/test_binary.c):
 * the exchange is one step, or two when SASL_AUTH carries no data (the
 * server answers "continue" and takes the credentials in SASL_STEP). Every
 * SASL_AUTH or SASL_STEP first drops the connection's authentication
 * (proto_bin.c calls init_sasl_conn()), so a failed retry logs a client out.
 */
#include <string.h>
#include <strings.h>

#include "binary_internal.h"

bool mr_sasl_plain_parse(const char *data, size_t len, const char **user, size_t *ulen, const char **pass,
                         size_t *plen)
{
    const char *nul1 = memchr(data, '\0', len);
    if (!nul1)
        return false;
    const char *cid = nul1 + 1;
    const char *nul2 = memchr(cid, '\0', len - (size_t)(cid - data));
    if (!nul2)
        return false;
    const char *pw = nul2 + 1;
    size_t pwlen = len - (size_t)(pw - data);
    /* Cyrus refuses more data after the password. */
    if (memchr(pw, '\0', pwlen))
        return false;
    size_t zlen = (size_t)(nul1 - data), clen = (size_t)(nul2 - cid);
    /* An authorization identity other than the user: acting for someone
     * else, which Cyrus refuses without a proxy policy (memcached has none). */
    if (zlen && (zlen != clen || memcmp(data, cid, clen) != 0))
        return false;
    *user = cid;
    *ulen = clen;
    *pass = pw;
    *plen = pwlen;
    return true;
}

static bool check(const mr_bin_request *req, const mr_auth_table *table)
{
    const char *user, *pass;
    size_t ulen, plen;
    if (!table || !mr_sasl_plain_parse(req->value, req->value_len, &user, &ulen, &pass, &plen))
        return false;
    return mr_auth_check(table, user, ulen, pass, plen);
}

/* Cyrus matches mechanism names without regard to case. */
static bool is_plain(const char *mech, size_t len)
{
    return len == 5 && strncasecmp(mech, "PLAIN", 5) == 0;
}

void mr_bin_sasl(mr_bin_sasl_state *state, const mr_bin_request *req, const mr_auth_table *table,
                 mr_bin_sasl_result *out)
{
    memset(out, 0, sizeof(*out));
    out->status = MR_BIN_AUTH_ERROR;
    out->counts = true;
    if (mr_bin_base_opcode(req->h.opcode) == MR_BIN_OP_SASL_AUTH) {
        *state = MR_BIN_SASL_IDLE;
        if (!is_plain(req->key, req->h.keylen))
            return;
        if (req->value_len == 0) {
            *state = MR_BIN_SASL_STEPPING;
            out->status = MR_BIN_AUTH_CONTINUE;
            out->counts = false;
            return;
        }
    } else if (*state != MR_BIN_SASL_STEPPING) {
        return; /* no exchange waits for a step (the mechanism named is ignored) */
    }
    /* Measured: a failed step leaves the exchange waiting for another. */
    if (check(req, table)) {
        *state = MR_BIN_SASL_DONE;
        out->status = MR_BIN_SUCCESS;
        out->authenticated = true;
    }
}

size_t mr_bin_sasl_reply(const mr_bin_plan *plan, const mr_bin_sasl_result *res, char *out, size_t cap)
{
    const char *text = res->status == MR_BIN_SUCCESS ? "Authenticated" : NULL;
    return mr_bin_status_reply(plan, res->status, text, out, cap);
}
