/* net.c: address resolution, connect errors and socket options (net.h). */
#include "memrelay/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "memrelay/log.h"

int mr_net_resolve(const mr_server_conf *sc, mr_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (sc->addr.is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->addr;
        un->sun_family = AF_UNIX;
        if (strlen(sc->addr.host) >= sizeof(un->sun_path)) {
            mr_log_error("server %s: unix path too long", sc->spec);
            return -1;
        }
        strcpy(un->sun_path, sc->addr.host);
        out->len = sizeof(*un);
        return 0;
    }
    char port[16];
    snprintf(port, sizeof(port), "%u", sc->addr.port);
    /* Numbers only: a host name is looked up asynchronously (resolve.c),
     * never here, so nothing ever waits on DNS. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res = NULL;
    int rc = getaddrinfo(sc->addr.host, port, &hints, &res);
    if (rc == EAI_NONAME)
        return 1;
    if (rc != 0 || !res) {
        mr_log_error("server %s: bad address '%s': %s", sc->spec, sc->addr.host, gai_strerror(rc));
        return -1;
    }
    memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

const char *mr_net_format(const mr_sockaddr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->len == 0)
        snprintf(buf, cap, "unresolved");
    else if (a->addr.ss_family == AF_UNIX)
        snprintf(buf, cap, "%s", ((const struct sockaddr_un *)&a->addr)->sun_path);
    else if (a->addr.ss_family == AF_INET &&
             inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->addr)->sin_addr, ip, sizeof(ip)))
        snprintf(buf, cap, "%s:%u", ip, ntohs(((const struct sockaddr_in *)&a->addr)->sin_port));
    else if (a->addr.ss_family == AF_INET6 &&
             inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->addr)->sin6_addr, ip, sizeof(ip)))
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port));
    else
        snprintf(buf, cap, "?");
    return buf;
}

mr_err mr_net_connect_error(int sys_errno)
{
    return sys_errno == ECONNREFUSED || sys_errno == ENOENT ? MR_ERR_REFUSED : MR_ERR_UNAVAILABLE;
}

void mr_net_tune(int fd, bool is_unix, bool keepalive)
{
    if (is_unix)
        return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (keepalive)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}
