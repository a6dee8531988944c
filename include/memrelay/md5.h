/* Layer: dist (src/dist/; may use base). */
/* md5.h: RFC 1321 MD5, used by the md5 key hash and by ketama ring points. */
#ifndef MEMRELAY_MD5_H
#define MEMRELAY_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[4]; /* a b c d */
    uint64_t bytes;    /* total bytes fed so far */
    uint8_t block[64]; /* pending partial block */
} mr_md5_ctx;

void mr_md5_init(mr_md5_ctx *ctx);
void mr_md5_update(mr_md5_ctx *ctx, const void *data, size_t len);
void mr_md5_final(mr_md5_ctx *ctx, uint8_t digest[16]);

/* One-shot digest of `len` bytes. */
void mr_md5(const void *data, size_t len, uint8_t digest[16]);

#endif
