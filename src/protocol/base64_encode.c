/* base64_encode.c: the base64 encoder (RFC 4648 alphabet, '=' padding).
 *
 * memrelay writes a binary client's key as a meta key with the `b` flag when
 * the key is not plain text; memcached decodes it back to the same bytes.
 * The decoder, which must mirror memcached's leniency, is base64.c.
 */
#include "memrelay/binary.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mr_base64_encode(const char *in, size_t len, char *out, size_t cap)
{
    size_t need = (len + 2) / 3 * 4;
    if (need > cap)
        return 0;
    const unsigned char *p = (const unsigned char *)in;
    size_t w = 0;
    for (size_t i = 0; i < len; i += 3) {
        size_t left = len - i;
        uint32_t v =
            (uint32_t)p[i] << 16 | (left > 1 ? (uint32_t)p[i + 1] << 8 : 0) | (left > 2 ? p[i + 2] : 0);
        out[w++] = alphabet[v >> 18 & 63];
        out[w++] = alphabet[v >> 12 & 63];
        out[w++] = left > 1 ? alphabet[v >> 6 & 63] : '=';
        out[w++] = left > 2 ? alphabet[v & 63] : '=';
    }
    return w;
}
