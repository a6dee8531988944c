/* Layer: base (src/base/; may use no other layer). */
/* check.h: ownership checks, compiled in only for test builds.
 *
 * MR_CHECK(cond) states an invariant the code relies on (who owns a
 * message, how many references a block has). Built with -DMEMRELAY_CHECKS=ON
 * (scripts/test.sh turns it on for the sanitizer build, scripts/fuzz.sh for
 * the fuzz targets), a false condition logs "check failed: file:line: cond"
 * and aborts, so a test sees the broken invariant where it breaks instead of
 * as a use-after-free later. Otherwise, as in the release and benchmark
 * binary, it costs nothing: the condition is type-checked and never
 * evaluated. assert() is not used because RelWithDebInfo defines NDEBUG.
 */
#ifndef MEMRELAY_CHECK_H
#define MEMRELAY_CHECK_H

#ifdef MEMRELAY_CHECKS
#define MR_CHECK(cond) ((cond) ? (void)0 : mr_check_failed(__FILE__, __LINE__, #cond))
#else
#define MR_CHECK(cond) ((void)sizeof((cond) ? 1 : 0))
#endif

/* Log the failed check (error level, never rate-limited) and abort(). */
_Noreturn void mr_check_failed(const char *file, int line, const char *cond);

#endif
