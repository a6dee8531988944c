/* check.c: what a failed MR_CHECK does (check.h). */
#include "memrelay/check.h"

#include <stdlib.h>

#include "memrelay/log.h"

_Noreturn void mr_check_failed(const char *file, int line, const char *cond)
{
    mr_log_write(MR_LOG_ERROR, "check failed: %s:%d: %s", file, line, cond);
    abort();
}
