/* Layer: net (src/net/; may use base, dist, config, protocol). */
/* net.h: what every socket of memrelay shares: addresses, the one mapping
 * of a failed connect to an mr_err, and socket options.
 */
#ifndef MEMRELAY_NET_H
#define MEMRELAY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "memrelay/config.h"
#include "memrelay/error.h"

/* An address to connect to; len 0: none (a host name not resolved yet). */
typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} mr_sockaddr;

/* A server's address when its line gives one that needs no lookup (a unix
 * path, an IP literal): 0. A host name: 1, *out empty (resolve.c looks it
 * up without blocking). -1 and a log line when the line cannot be used.
 * Never blocks. */
int mr_net_resolve(const mr_server_conf *sc, mr_sockaddr *out);

/* "127.0.0.1:11211", "[::1]:11211", the unix path, or "unresolved". */
const char *mr_net_format(const mr_sockaddr *a, char *buf, size_t cap);

/* Why a connect failed, from its errno (a synchronous connect() or SO_ERROR
 * after EINPROGRESS): MR_ERR_REFUSED when nobody listens (ECONNREFUSED, or
 * ENOENT for a unix socket path that does not exist), else
 * MR_ERR_UNAVAILABLE. */
mr_err mr_net_connect_error(int sys_errno);

/* Options of a client or server TCP connection: TCP_NODELAY, and
 * SO_KEEPALIVE when `keepalive` (the pool's tcpkeepalive). Unix sockets
 * have neither. */
void mr_net_tune(int fd, bool is_unix, bool keepalive);

#endif
