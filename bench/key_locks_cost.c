/* key_locks_cost.c: what a replicated write pays for its key lock when no
 * other worker holds the stripe (mr_key_lock + mr_key_unlock, key_locks.h),
 * in ns per write, one thread. Not built by default:
 *
 *   cc -O2 -Iinclude bench/key_locks_cost.c build/libmemrelay_core.a -lev -lyaml -lpthread -o /tmp/klc
 *   /tmp/klc
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "memrelay/key_locks.h"
#include "memrelay/request.h"
#include "memrelay/worker.h"

int main(void)
{
    static mr_shared shared;
    mr_worker *w = calloc(1, sizeof(*w));
    mr_req *req = calloc(1, sizeof(*req));
    if (!w || !req || !(shared.key_locks = mr_key_locks_new(2)))
        return 1;
    shared.nworkers = 2;
    w->shared = &shared;
    req->worker = w;
    const long n = 20000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        req->conn_hint = (uint32_t)(i * 2654435761u);
        if (!mr_key_lock(req))
            return 1;
        mr_key_unlock(req);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
    printf("key lock + unlock, uncontended: %.1f ns per replicated write\n", ns);
    mr_key_locks_free(shared.key_locks);
    free(req);
    free(w);
    return 0;
}
