/* pairfloor: the CPU one loopback TCP message costs on this machine.
 *
 * A proxy answering a request it did not pipeline reads that request from
 * the client's socket and writes the reply to it: at least one read and one
 * write per request, whatever else it does. On loopback the write also runs
 * the receiving side's TCP processing in the writer's context, so one
 * write+read pair within one process is the kernel work of one message, sent
 * and received. This program measures the CPU time (user + system, from
 * CLOCK_PROCESS_CPUTIME_ID) of such pairs, the same size as the small
 * benchmark's replies, on one connected pair of loopback sockets.
 *
 * It is a lower bound for a proxy's CPU per request: a proxy also wakes the
 * client that waits for the reply, and has its backends to talk to.
 *
 *   pairfloor [PAIRS [REPEATS [BYTES]]]   (defaults 100000, 5, 130)
 *
 * Prints one JSON line: the median and lowest µs of CPU per pair over the
 * repeats, and the wall-clock µs of the lowest repeat.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A connected pair of loopback TCP sockets, TCP_NODELAY as a proxy sets them. */
static int connected_pair(int *writer, int *reader)
{
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0 || listen(l, 1) < 0)
        return -1;
    *writer = socket(AF_INET, SOCK_STREAM, 0);
    if (*writer < 0 || connect(*writer, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -1;
    *reader = accept(l, NULL, NULL);
    close(l);
    if (*reader < 0)
        return -1;
    setsockopt(*writer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(*reader, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 100000;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    size_t bytes = argc > 3 ? (size_t)atol(argv[3]) : 130;
    if (pairs <= 0 || repeats <= 0 || repeats > 100 || bytes == 0 || bytes > 65536) {
        fprintf(stderr, "usage: pairfloor [PAIRS [REPEATS (1-100) [BYTES (1-65536)]]]\n");
        return 2;
    }
    int w, r;
    if (connected_pair(&w, &r) < 0) {
        perror("pairfloor: loopback socket pair");
        return 1;
    }
    char *out = malloc(bytes), *in = malloc(65536);
    if (!out || !in)
        return 1;
    memset(out, 'v', bytes);
    /* Two pieces, as a reply gathered from a header and a value would be. */
    struct iovec iov[2] = {{out, bytes / 2}, {out + bytes / 2, bytes - bytes / 2}};
    double cpu[100], lowest = 0, best_wall = 0;
    for (int rep = 0; rep < repeats; rep++) {
        double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), t0 = seconds(CLOCK_MONOTONIC);
        for (long i = 0; i < pairs; i++) {
            if (writev(w, iov, 2) != (ssize_t)bytes) {
                perror("pairfloor: writev");
                return 1;
            }
            size_t got = 0;
            while (got < bytes) {
                ssize_t n = read(r, in, 65536);
                if (n <= 0) {
                    perror("pairfloor: read");
                    return 1;
                }
                got += (size_t)n;
            }
        }
        cpu[rep] = (seconds(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)pairs * 1e6;
        double wall = (seconds(CLOCK_MONOTONIC) - t0) / (double)pairs * 1e6;
        if (rep == 0 || cpu[rep] < lowest) {
            lowest = cpu[rep];
            best_wall = wall;
        }
    }
    qsort(cpu, (size_t)repeats, sizeof(cpu[0]), cmp_double);
    printf(
        "{\"pairs\": %ld, \"repeats\": %d, \"bytes\": %zu, \"cpu_us_median\": %.3f, \"cpu_us_lowest\": %.3f, "
        "\"wall_us_of_lowest\": %.3f}\n",
        pairs, repeats, bytes, cpu[repeats / 2], lowest, best_wall);
    free(out);
    free(in);
    return 0;
}
