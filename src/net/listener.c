/* listener.c: bind and listen, TCP (IPv4, IPv6) or unix. */
#include "memrelay/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "memrelay/log.h"

static int open_unix(const mr_pool_conf *pool, const mr_addr_conf *addr)
{
    const char *path = addr->host;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(un.sun_path)) {
        mr_log_error("pool %s: unix path too long: %s", pool->name, path);
        return -1;
    }
    strcpy(un.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* A stale socket file from an earlier run would make bind fail. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
        mr_log_error("pool %s: bind %s: %s", pool->name, path, strerror(errno));
        close(fd);
        return -1;
    }
    if (addr->mode && chmod(path, addr->mode) < 0)
        mr_log_warn("pool %s: chmod %s: %s", pool->name, path, strerror(errno));
    if (listen(fd, pool->backlog) < 0) {
        mr_log_error("pool %s: listen %s: %s", pool->name, path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int open_tcp(const mr_pool_conf *pool, const mr_addr_conf *addr)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", addr->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int rc = getaddrinfo(addr->host, port, &hints, &res);
    if (rc != 0) {
        mr_log_error("pool %s: cannot resolve listen address %s: %s", pool->name, addr->host,
                     gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, pool->backlog) == 0)
            break;
        mr_log_error("pool %s: listen on %s:%u: %s", pool->name, addr->host, addr->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int mr_listener_open_at(const mr_pool_conf *pool, const mr_addr_conf *addr)
{
    return addr->is_unix ? open_unix(pool, addr) : open_tcp(pool, addr);
}

void mr_listener_close_at(const mr_addr_conf *addr, int fd)
{
    if (fd < 0)
        return;
    close(fd);
    if (addr->is_unix)
        unlink(addr->host);
}

void mr_listener_refuse(int fd)
{
    /* Linux takes a listening socket (TCP or unix) out of the listening
     * state on shutdown(): connects are refused from then on, connections
     * still in the backlog are reset, and the fd stays valid (workers'
     * watchers on it see accept() fail with EINVAL until they stop). */
    if (fd >= 0 && shutdown(fd, SHUT_RDWR) < 0)
        mr_log_warn("listener: shutdown: %s", strerror(errno));
}

int mr_listener_open(const mr_pool_conf *pool)
{
    return mr_listener_open_at(pool, &pool->listen);
}

void mr_listener_close(const mr_pool_conf *pool, int fd)
{
    mr_listener_close_at(&pool->listen, fd);
}
