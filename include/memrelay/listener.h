/* Layer: net (src/net/; may use base, dist, config, protocol). */
/* listener.h: listening sockets (TCP v4/v6 and unix), opened once at start-up.
 * Every worker watches every listening socket; the kernel hands each new
 * connection to one of them. */
#ifndef MEMRELAY_LISTENER_H
#define MEMRELAY_LISTENER_H

#include "memrelay/config.h"

/* Open a non-blocking listening socket for `pool`. Returns the fd, or -1
 * after logging why. */
int mr_listener_open(const mr_pool_conf *pool);

/* Close it, removing a unix socket's file. */
void mr_listener_close(const mr_pool_conf *pool, int fd);

/* The same for another address of the pool (its tls_listen). */
int mr_listener_open_at(const mr_pool_conf *pool, const mr_addr_conf *addr);
void mr_listener_close_at(const mr_addr_conf *addr, int fd);

/* Stop taking connections on it now (a graceful shutdown): new connects
 * are refused at once instead of queueing behind a server that will not
 * serve them. The fd stays open until it is closed as usual. */
void mr_listener_refuse(int fd);

#endif
