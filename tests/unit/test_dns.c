/* test_dns.c: the c-ares resolver on a libev loop, against a real DNS server.
 *
 * Each test starts Debian's dnsmasq on a free loopback UDP port, serving
 * only what the test gives it (reproduce by hand with the same flags):
 *
 *   dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
 *     --listen-address=127.0.0.1 --bind-interfaces --port=PORT --user=root \
 *     --pid-file=FILE --local-ttl=7 --addn-hosts=HOSTS \
 *     --srv-host=_memcache._tcp.pool.test,mc0.pool.test,11211,0,5 ...
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ares.h>
#include <ev.h>

#include "memrelay/dns.h"

static pid_t dnsmasq_pid = -1;
static char server[64];
static char workdir[64];
static char log_path[128];

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* dnsmasq with `hosts` (an /etc/hosts-style text) and the SRV lines. */
static void start_dnsmasq(const char *hosts, const char *const *srv, size_t nsrv)
{
    snprintf(workdir, sizeof(workdir), "/tmp/mr-dns-XXXXXX");
    cr_assert(mkdtemp(workdir) != NULL);
    char hosts_path[128], pid_path[128], port_arg[32], hosts_arg[160], pid_arg[160];
    snprintf(hosts_path, sizeof(hosts_path), "%s/hosts", workdir);
    snprintf(pid_path, sizeof(pid_path), "%s/pid", workdir);
    FILE *f = fopen(hosts_path, "w");
    cr_assert(f != NULL);
    fputs(hosts, f);
    fclose(f);
    int port = free_udp_port();
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    snprintf(port_arg, sizeof(port_arg), "--port=%d", port);
    snprintf(hosts_arg, sizeof(hosts_arg), "--addn-hosts=%s", hosts_path);
    snprintf(pid_arg, sizeof(pid_arg), "--pid-file=%s", pid_path);
    char *argv[32];
    size_t n = 0;
    argv[n++] = "dnsmasq";
    argv[n++] = "--keep-in-foreground";
    argv[n++] = "--no-resolv";
    argv[n++] = "--no-hosts";
    argv[n++] = "--conf-file=/dev/null";
    argv[n++] = "--listen-address=127.0.0.1";
    argv[n++] = "--bind-interfaces";
    argv[n++] = "--user=root";
    argv[n++] = "--local-ttl=7";
    argv[n++] = port_arg;
    argv[n++] = hosts_arg;
    argv[n++] = pid_arg;
    char srv_args[8][160];
    for (size_t i = 0; i < nsrv && i < 8; i++) {
        snprintf(srv_args[i], sizeof(srv_args[i]), "--srv-host=%s", srv[i]);
        argv[n++] = srv_args[i];
    }
    argv[n] = NULL;
    snprintf(log_path, sizeof(log_path), "%s/log", workdir);
    dnsmasq_pid = fork();
    cr_assert(dnsmasq_pid >= 0);
    if (dnsmasq_pid == 0) {
        int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(log, 1);
        dup2(log, 2);
        execvp("dnsmasq", argv);
        _exit(127);
    }
}

/* dnsmasq's own words, for a failure message. */
static const char *dnsmasq_log(void)
{
    static char text[2048];
    FILE *f = fopen(log_path, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    return text;
}

/* Has it exited (a port taken between free_udp_port and its bind)? */
static bool dnsmasq_exited(void)
{
    int status;
    if (dnsmasq_pid > 0 && waitpid(dnsmasq_pid, &status, WNOHANG) == dnsmasq_pid) {
        dnsmasq_pid = -1;
        return true;
    }
    return false;
}

static void stop_dnsmasq(void)
{
    if (dnsmasq_pid > 0) {
        kill(dnsmasq_pid, SIGTERM);
        waitpid(dnsmasq_pid, NULL, 0);
        dnsmasq_pid = -1;
    }
}

/* ---- a loop that runs until the answers are in ---- */

typedef struct {
    int calls;
    int status;
    size_t naddrs;
    char first[64];
    uint16_t port;
    uint32_t ttl;
    size_t ntargets;
    char targets[8][64];
    uint16_t tports[8], tweights[8];
    bool timer_fired_first; /* another watcher ran while the lookup was pending */
    bool timer_fired;
} answer;

static void on_host(void *ctx, const mr_dns_host_result *r)
{
    answer *a = ctx;
    a->calls++;
    a->status = r->status;
    a->naddrs = r->naddrs;
    a->ttl = r->ttl_s;
    a->timer_fired_first = a->timer_fired;
    if (r->naddrs) {
        const struct sockaddr_storage *ss = &r->addrs[0].sa;
        if (ss->ss_family == AF_INET) {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a->first, sizeof(a->first));
            a->port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
        } else {
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a->first, sizeof(a->first));
            a->port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
        }
    }
}

static void on_srv(void *ctx, const mr_dns_srv_result *r)
{
    answer *a = ctx;
    a->calls++;
    a->status = r->status;
    a->ntargets = r->ntargets;
    for (size_t i = 0; i < r->ntargets && i < 8; i++) {
        snprintf(a->targets[i], sizeof(a->targets[i]), "%s", r->targets[i].target);
        a->tports[i] = r->targets[i].port;
        a->tweights[i] = r->targets[i].weight;
    }
}

static void stop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void mark_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ((answer *)t->data)->timer_fired = true;
}

/* Run until `a->calls` reaches `want`, at most `limit` seconds. */
static void run_until(struct ev_loop *loop, answer *a, int want, double limit)
{
    ev_timer guard;
    ev_timer_init(&guard, stop_cb, limit, 0);
    ev_timer_start(loop, &guard);
    while (a->calls < want && ev_is_active(&guard))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
}

static mr_dns *dns_for(struct ev_loop *loop, const char *srv, uint32_t timeout_ms)
{
    char err[256];
    const char *servers[] = {srv};
    mr_dns *d = mr_dns_new(loop, servers, 1, timeout_ms, 2, err, sizeof(err));
    cr_assert(d != NULL, "%s", err);
    return d;
}

/* dnsmasq is up once it answers; false if it exited. */
static bool wait_for_dnsmasq(struct ev_loop *loop)
{
    for (int i = 0; i < 200; i++) {
        if (dnsmasq_exited())
            return false;
        mr_dns *d = dns_for(loop, server, 100);
        answer a = {0};
        mr_dns_resolve(d, "ready.pool.test", 1, AF_INET, on_host, &a);
        run_until(loop, &a, 1, 2.0);
        mr_dns_free(d);
        if (a.calls == 1 && a.status == ARES_SUCCESS)
            return true;
        usleep(50 * 1000);
    }
    cr_assert_fail("dnsmasq did not answer on %s: %s", server, dnsmasq_log());
    return false;
}

static struct ev_loop *setup_loop(const char *hosts, const char *const *srv, size_t nsrv)
{
    char all[1024];
    snprintf(all, sizeof(all), "127.0.0.9 ready.pool.test\n%s", hosts);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    for (int attempt = 0; attempt < 5; attempt++) { /* another port if the one picked was taken */
        start_dnsmasq(all, srv, nsrv);
        if (wait_for_dnsmasq(loop))
            return loop;
    }
    cr_assert_fail("dnsmasq would not start: %s", dnsmasq_log());
    return loop;
}

static void teardown(void)
{
    stop_dnsmasq();
}

TestSuite(dns, .fini = teardown, .timeout = 30);

Test(dns, a_name_resolves_through_the_given_server_with_its_ttl_and_port)
{
    struct ev_loop *loop = setup_loop("127.0.0.2 mc0.pool.test\n", NULL, 0);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0};
    cr_assert(mr_dns_resolve(d, "mc0.pool.test", 11211, AF_INET, on_host, &a) != NULL);
    cr_assert_eq(a.calls, 0, "the callback ran inside the call that started the lookup");
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, ARES_SUCCESS, "%s", mr_dns_strerror(a.status));
    cr_assert_str_eq(a.first, "127.0.0.2");
    cr_assert_eq(a.port, 11211);
    cr_assert_eq(a.ttl, 7);
    cr_assert_eq(mr_dns_lookups(d), 1);
    cr_assert_eq(mr_dns_failures(d), 0);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, several_a_records_are_all_returned)
{
    struct ev_loop *loop =
        setup_loop("127.0.0.2 many.pool.test\n127.0.0.3 many.pool.test\n127.0.0.4 many.pool.test\n", NULL, 0);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0};
    mr_dns_resolve(d, "many.pool.test", 1, AF_INET, on_host, &a);
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.status, ARES_SUCCESS);
    cr_assert_eq(a.naddrs, 3);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, an_unknown_name_fails_with_a_status)
{
    struct ev_loop *loop = setup_loop("", NULL, 0);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0};
    mr_dns_resolve(d, "nosuch.pool.test", 1, AF_INET, on_host, &a);
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.calls, 1);
    cr_assert_neq(a.status, ARES_SUCCESS);
    cr_assert_eq(a.naddrs, 0);
    cr_assert_eq(mr_dns_failures(d), 1);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, an_ip_literal_answers_without_a_query_and_still_asynchronously)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    mr_dns *d = dns_for(loop, "127.0.0.1:9", 100); /* nothing answers there */
    answer a = {0};
    mr_dns_resolve(d, "127.0.0.5", 4242, AF_UNSPEC, on_host, &a);
    cr_assert_eq(a.calls, 0);
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.status, ARES_SUCCESS);
    cr_assert_str_eq(a.first, "127.0.0.5");
    cr_assert_eq(a.port, 4242);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, etc_hosts_is_read_before_the_dns_server)
{
    struct ev_loop *loop = setup_loop("127.0.0.77 localhost\n", NULL, 0);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0};
    mr_dns_resolve(d, "localhost", 1, AF_INET, on_host, &a);
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.status, ARES_SUCCESS);
    cr_assert_str_eq(a.first, "127.0.0.1", "got %s: the DNS server answered before /etc/hosts", a.first);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, srv_targets_come_sorted_by_priority_then_weight_with_their_ports)
{
    const char *srv[] = {
        "_memcache._tcp.pool.test,mc1.pool.test,11212,0,1",
        "_memcache._tcp.pool.test,mc0.pool.test,11211,0,5",
        "_memcache._tcp.pool.test,mc2.pool.test,11213,1,9",
    };
    struct ev_loop *loop = setup_loop("", srv, 3);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0};
    mr_dns_srv(d, "_memcache._tcp.pool.test", on_srv, &a);
    run_until(loop, &a, 1, 5.0);
    cr_assert_eq(a.status, ARES_SUCCESS, "%s", mr_dns_strerror(a.status));
    cr_assert_eq(a.ntargets, 3);
    cr_assert_str_eq(a.targets[0], "mc0.pool.test");
    cr_assert_eq(a.tports[0], 11211);
    cr_assert_eq(a.tweights[0], 5);
    cr_assert_str_eq(a.targets[1], "mc1.pool.test");
    cr_assert_str_eq(a.targets[2], "mc2.pool.test");
    cr_assert_eq(a.tports[2], 11213);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, a_server_that_never_answers_fails_the_lookup_without_stopping_the_loop)
{
    /* A bound UDP socket that never replies: the query waits its timeout
     * while other watchers on the loop keep running. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char where[64];
    snprintf(where, sizeof(where), "127.0.0.1:%d", ntohs(sa.sin_port));
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    mr_dns *d = dns_for(loop, where, 300);
    answer a = {0};
    ev_timer mark;
    ev_timer_init(&mark, mark_cb, 0.05, 0);
    mark.data = &a;
    ev_timer_start(loop, &mark);
    mr_dns_resolve(d, "slow.pool.test", 1, AF_INET, on_host, &a);
    run_until(loop, &a, 1, 10.0);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, ARES_ETIMEOUT, "%s", mr_dns_strerror(a.status));
    cr_assert(a.timer_fired_first, "the loop was blocked while the lookup waited");
    mr_dns_free(d);
    ev_loop_destroy(loop);
    close(fd);
}

Test(dns, a_cancelled_lookup_never_calls_back)
{
    struct ev_loop *loop = setup_loop("127.0.0.2 mc0.pool.test\n", NULL, 0);
    mr_dns *d = dns_for(loop, server, 1000);
    answer a = {0}, b = {0};
    mr_dns_query *q = mr_dns_resolve(d, "mc0.pool.test", 1, AF_INET, on_host, &a);
    mr_dns_resolve(d, "mc0.pool.test", 1, AF_INET, on_host, &b);
    mr_dns_cancel(q);
    run_until(loop, &b, 1, 5.0);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(a.calls, 0);
    mr_dns_free(d);
    ev_loop_destroy(loop);
}

Test(dns, freeing_with_lookups_pending_calls_nobody_back)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    mr_dns *d = dns_for(loop, "127.0.0.1:9", 1000);
    answer a = {0};
    mr_dns_resolve(d, "pending.pool.test", 1, AF_INET, on_host, &a);
    mr_dns_resolve(d, "127.0.0.1", 1, AF_INET, on_host, &a); /* finished, not yet delivered */
    mr_dns_free(d);
    ev_run(loop, EVRUN_NOWAIT);
    cr_assert_eq(a.calls, 0);
    ev_loop_destroy(loop);
}
