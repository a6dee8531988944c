/* Layer: net (src/net/; may use base, dist, config, protocol). */
/* dns.h: asynchronous name lookups (c-ares) driven by one libev loop.
 *
 * Why c-ares on the loop rather than getaddrinfo() on a resolver thread:
 * a lookup is a few UDP packets, and c-ares turns it into socket events the
 * loop already knows how to wait for, so a DNS server that takes 5 s to
 * answer costs a pending query, never a blocked thread or a thread pool to
 * size; it honours /etc/hosts first ("fb" lookups, as the C library does),
 * gives each answer's TTL, speaks SRV, and can be pointed at other DNS
 * servers (memrelay.dns_servers) without touching /etc/resolv.conf.
 *
 * One mr_dns per loop, used only from that loop's thread (memrelay runs it
 * on the main thread). Every lookup calls its callback exactly once, from
 * the loop (never from inside the call that started it), unless it was
 * cancelled first. */
#ifndef MEMRELAY_DNS_H
#define MEMRELAY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

typedef struct mr_dns mr_dns;
typedef struct mr_dns_query mr_dns_query;

/* One address of an answer, ready for connect(). */
typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
} mr_dns_addr;

#define MR_DNS_MAX_ADDRS 64u /* addresses kept from one answer */
#define MR_DNS_MAX_SRV 256u  /* targets kept from one SRV answer */

typedef struct {
    int status;         /* 0, or a c-ares status (mr_dns_strerror) */
    mr_dns_addr *addrs; /* owned by the result: valid during the callback */
    size_t naddrs;
    uint32_t ttl_s; /* the smallest TTL of the addresses (0: unknown, e.g. /etc/hosts) */
} mr_dns_host_result;

typedef struct {
    char *target; /* host name, without the trailing dot */
    uint16_t port, weight, priority;
} mr_dns_srv_target;

typedef struct {
    int status;
    mr_dns_srv_target *targets; /* valid during the callback */
    size_t ntargets;
} mr_dns_srv_result;

typedef void (*mr_dns_host_cb)(void *ctx, const mr_dns_host_result *r);
typedef void (*mr_dns_srv_cb)(void *ctx, const mr_dns_srv_result *r);

/* `servers`: "host:port" / "[v6]:port" entries to ask instead of
 * /etc/resolv.conf's (NULL or none: the system's). `timeout_ms`: per try;
 * `tries`: attempts per server. NULL with `err` filled on failure. */
mr_dns *mr_dns_new(struct ev_loop *loop, const char *const *servers, size_t nservers, uint32_t timeout_ms,
                   uint32_t tries, char *err, size_t errlen);
/* Cancels what is pending (their callbacks are not called). */
void mr_dns_free(mr_dns *d);

/* The addresses of `host` (`family`: AF_UNSPEC, AF_INET or AF_INET6), with
 * `port` filled in. An IP literal answers without a packet. Returns NULL
 * (callback never called) only when out of memory. */
mr_dns_query *mr_dns_resolve(mr_dns *d, const char *host, uint16_t port, int family, mr_dns_host_cb cb,
                             void *ctx);
/* The SRV targets of `name`, ordered by priority then weight (heaviest
 * first), then name. */
mr_dns_query *mr_dns_srv(mr_dns *d, const char *name, mr_dns_srv_cb cb, void *ctx);
/* The callback will not be called (the caller is going away). */
void mr_dns_cancel(mr_dns_query *q);

/* Lookups started, and those that ended in an error, so far. */
uint64_t mr_dns_lookups(const mr_dns *d);
uint64_t mr_dns_failures(const mr_dns *d);

const char *mr_dns_strerror(int status);

#endif
