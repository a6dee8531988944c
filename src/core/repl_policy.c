/* repl_policy.c: which path a replicated command takes (replicate.c's
 * header comment has the table), and how many acknowledgements a fan-out
 * write needs.
 */
#include <string.h>

#include "repl_internal.h"

/* Does the meta command carry flag `f` (a token starting with it)? */
static bool meta_has_flag(const mr_req *req, char f)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len;
    const char *end = req->line.p + h->line_len;
    bool first = true;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\r' || *p == '\n'))
            p++;
        if (p >= end)
            break;
        const char *tok = p;
        while (p < end && *p != ' ' && *p != '\r' && *p != '\n')
            p++;
        /* ms: the first token after the key is the data length */
        if (first && req->cmd == MR_CMD_MS) {
            first = false;
            continue;
        }
        first = false;
        if (*tok == f)
            return true;
        if (f == 'M' && *tok == 'M' && p - tok >= 2)
            return true;
    }
    return false;
}

/* ms mode flag: add (A/a), append (E/e), prepend (P/p) are not idempotent. */
static bool ms_mode_not_idempotent(const mr_req *req)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len;
    const char *end = req->line.p + h->line_len;
    for (; p + 2 < end; p++)
        if (p[0] == ' ' && p[1] == 'M')
            return strchr("AaEePp", p[2]) != NULL;
    return false;
}

repl_op mr_repl_classify(const mr_req *req)
{
    switch (req->cmd) {
    case MR_CMD_SET:
    case MR_CMD_REPLACE:
    case MR_CMD_APPEND:
    case MR_CMD_PREPEND:
    case MR_CMD_DELETE:
    case MR_CMD_TOUCH:
        return OP_FANOUT;
    case MR_CMD_ADD:
    case MR_CMD_CAS:
        return OP_COPY_SET;
    case MR_CMD_INCR:
    case MR_CMD_DECR:
    case MR_CMD_MA:
        return OP_READ_BACK;
    case MR_CMD_MS:
        if (meta_has_flag(req, 'C') || meta_has_flag(req, 'E') || meta_has_flag(req, 'I') ||
            ms_mode_not_idempotent(req))
            return OP_READ_BACK;
        return OP_FANOUT;
    case MR_CMD_MD:
        if (meta_has_flag(req, 'C') || meta_has_flag(req, 'E'))
            return OP_DELETE_OTHERS;
        return OP_FANOUT;
    case MR_CMD_GET:
        return OP_READ;
    case MR_CMD_MG:
        if (meta_has_flag(req, 'N') || meta_has_flag(req, 'T') || meta_has_flag(req, 'E'))
            return OP_READ_PRIMARY;
        return OP_READ;
    default:
        return OP_READ_PRIMARY;
    }
}

uint8_t mr_repl_acks_needed(const mr_pool_conf *pc, uint32_t n)
{
    switch (pc->write_ack) {
    case MR_WRITE_ACK_ALL:
        return (uint8_t)n;
    case MR_WRITE_ACK_QUORUM:
        return (uint8_t)(n / 2 + 1);
    default:
        return 1;
    }
}
