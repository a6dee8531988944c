/* base64.c: the base64 decoder for meta keys (the `b` flag).
 *
 * It decodes exactly what memcached 1.6 decodes, measured byte by byte:
 * bytes outside the alphabet (A-Z a-z 0-9 + / and '=') are skipped, the
 * remaining ones must be a non-zero multiple of four, and decoding stops
 * after the first group of four that holds a '=' (one '=' in it drops the
 * group's last byte, two drop two, more is an error). "Zm9vYg==Zm9v" is
 * "foob"; "Zg=a" is "f\0"; "Zm9v!m9v" fails (seven valid bytes).
 */
#include <stdint.h>

#include "memrelay/ascii.h"

/* Value of a base64 byte, 64 for '=', 0xff outside the alphabet. */
static uint8_t b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0' + 52);
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    if (c == '=')
        return 64;
    return 0xff;
}

long mr_base64_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        if (b64_value((unsigned char)in[i]) != 0xff)
            count++;
    if (count == 0 || count % 4 != 0)
        return -1;

    size_t w = 0;
    uint8_t group[4];
    unsigned n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t v = b64_value((unsigned char)in[i]);
        if (v == 0xff)
            continue;
        if (v == 64) {
            pad++;
            v = 0;
        }
        group[n++] = v;
        if (n < 4)
            continue;
        n = 0;
        unsigned keep = 3;
        if (pad) {
            if (pad > 2)
                return -1;
            keep -= pad;
        }
        uint8_t bytes[3] = {(uint8_t)(group[0] << 2 | group[1] >> 4),
                            (uint8_t)(group[1] << 4 | group[2] >> 2), (uint8_t)(group[2] << 6 | group[3])};
        if (cap - w < keep)
            return -1;
        for (unsigned k = 0; k < keep; k++)
            out[w++] = (char)bytes[k];
        if (pad)
            break;
    }
    return (long)w;
}
