/* net.c: address resolution, connect errors and socket options (net.h). */
#include "memrelay/net.h"

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
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(sc->addr.host, port, &hints, &res);
    if (rc != 0 || !res) {
        mr_log_error("server %s: cannot resolve '%s': %s", sc->spec, sc->addr.host, gai_strerror(rc));
        return -1;
    }
    memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
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
