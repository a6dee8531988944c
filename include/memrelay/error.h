/* Layer: protocol (src/protocol/; may use base, dist, config). */
/* error.h: why a message got no reply from its server, as a value.
 *
 * Errors travel up the stack as an mr_err and become protocol text in one
 * place, mr_error_reply(); `stats servers` and /metrics name them by class.
 */
#ifndef MEMRELAY_ERROR_H
#define MEMRELAY_ERROR_H

/* The enum, its class name in `stats servers` and /metrics
 * (`errors_<class>`), and its protocol text. */
#define MR_ERRORS(X)                                                              \
    X(NONE, "none", "")                                                           \
    X(TIMEOUT, "timeout", "SERVER_ERROR timeout\r\n")                             \
    X(REFUSED, "refused", "SERVER_ERROR connection refused\r\n")                  \
    X(UNAVAILABLE, "unavailable", "SERVER_ERROR backend unavailable\r\n")         \
    X(BAD_REPLY, "bad_reply", "SERVER_ERROR backend sent an invalid reply\r\n")   \
    X(QUEUE_FULL, "queue_full", "SERVER_ERROR backend queue full\r\n")            \
    X(NOMEM, "nomem", "SERVER_ERROR out of memory\r\n")                           \
    X(DOWN, "down", "SERVER_ERROR backend unavailable\r\n")                       \
    X(TLS, "tls", "SERVER_ERROR backend TLS handshake failed\r\n")                \
    X(NO_SERVERS, "no_servers", "SERVER_ERROR no servers in pool\r\n")            \
    X(UNRESOLVED, "unresolved", "SERVER_ERROR backend name does not resolve\r\n") \
    X(MISMATCH, "mismatch", "SERVER_ERROR backend reply did not fit its request\r\n")

typedef enum {
#define MR_ERR_ENUM(e, name, text) MR_ERR_##e,
    MR_ERRORS(MR_ERR_ENUM)
#undef MR_ERR_ENUM
        MR_ERR_COUNT
} mr_err;

/* The error's reply to a client, "\r\n" included ("" for NONE). */
const char *mr_error_reply(mr_err err);
/* The error's class name ("timeout", "refused", ...; "none" for NONE). */
const char *mr_error_class(mr_err err);

#endif
