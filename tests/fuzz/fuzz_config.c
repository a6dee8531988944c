/* fuzz_config.c: libFuzzer target for the configuration loader.
 *
 * The input is a YAML file. mr_config_load_string either fails with a
 * message (NUL-terminated, within its buffer) or returns a configuration
 * that prints (to /dev/null), finds each of its pools by name, and frees
 * cleanly (LeakSanitizer checks that nothing was left behind either way).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/config.h"

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (devnull == NULL) {
        devnull = fopen("/dev/null", "w");
        CHECK(devnull != NULL);
    }
    mr_config_error err;
    memset(&err, 0x5a, sizeof(err));
    mr_config *cfg = mr_config_load_string((const char *)data, size, "fuzz.yml", &err);
    if (cfg == NULL) {
        CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        CHECK(err.message[0] != '\0');
        return 0;
    }
    CHECK(cfg->npools >= 1 && cfg->pools != NULL);
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        CHECK(p->name != NULL);
        CHECK(mr_config_pool_index(cfg, p->name) == (long)i);
        for (size_t s = 0; s < p->nservers; s++) {
            CHECK(p->servers[s].weight >= 1);
            CHECK(p->servers[s].ident != NULL && p->servers[s].ident[0] != '\0');
        }
        for (size_t r = 0; r < p->nroutes; r++)
            CHECK(p->routes[r].pool_index < cfg->npools);
    }
    mr_config_print(devnull, cfg);
    fflush(devnull);
    mr_config_free(cfg);
    return 0;
}
