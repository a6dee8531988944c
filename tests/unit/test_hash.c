/* test_hash.c: key hashes, MD5, hash names and hash tags.
 *
 * Every vector below is bit-exact with twemproxy 0.5.0 and libmemcached 1.x
 * (REFERENCE section 1); the non-ASCII ones were checked against libhashkit
 * and against nutcracker's placement. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/hash.h"
#include "memrelay/md5.h"

static uint32_t h(mr_hash_kind kind, const char *key)
{
    return mr_hash(kind, key, strlen(key));
}

Test(hash, apple_vectors_match_twemproxy)
{
    static const struct {
        mr_hash_kind kind;
        uint32_t want;
    } v[] = {
        {MR_HASH_ONE_AT_A_TIME, 2297466611u}, {MR_HASH_MD5, 3195025439u},
        {MR_HASH_CRC16, 3662830516u},         {MR_HASH_CRC32, 10542u},
        {MR_HASH_CRC32A, 2838417488u},        {MR_HASH_FNV1_32, 67176023u},
        {MR_HASH_FNV1A_32, 280767167u},       {MR_HASH_FNV1_64, 473199127u},
        {MR_HASH_FNV1A_64, 1488911807u},      {MR_HASH_HSIEH, 3738850110u},
        {MR_HASH_JENKINS, 1442444624u},       {MR_HASH_MURMUR, 4142305122u},
    };
    cr_assert_eq(sizeof(v) / sizeof(v[0]), MR_HASH_COUNT, "every hash has an apple vector");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cr_expect_eq(h(v[i].kind, "apple"), v[i].want, "%s(\"apple\")", mr_hash_name(v[i].kind));
}

Test(hash, foo_vectors_for_the_two_default_hashes)
{
    cr_expect_eq(h(MR_HASH_FNV1A_64, "foo"), 4275688823u);
    cr_expect_eq(h(MR_HASH_MD5, "foo"), 3675831724u);
}

/* "café" in UTF-8 and a 7-byte key whose 3-byte tail starts with 0xe2 (the
 * signed-char path of hsieh). An unsigned-byte version fails these. */
Test(hash, non_ascii_bytes_are_sign_extended_like_x86_builds)
{
    static const char cafe[] = "caf\xc3\xa9";
    static const char euro[] = "\xe2\x82\xac\xe2\x82\xac\xe2";
    static const struct {
        mr_hash_kind kind;
        uint32_t cafe, euro;
    } v[] = {
        {MR_HASH_ONE_AT_A_TIME, 3650908318u, 1303165668u}, {MR_HASH_MD5, 3833532679u, 4114015568u},
        {MR_HASH_CRC16, 4129724007u, 1074020328u},         {MR_HASH_CRC32, 6317u, 15757u},
        {MR_HASH_CRC32A, 2561491637u, 1032690152u},        {MR_HASH_FNV1_64, 2315714289u, 2614225181u},
        {MR_HASH_FNV1A_64, 3472276361u, 735268421u},       {MR_HASH_FNV1_32, 3598905713u, 939306141u},
        {MR_HASH_FNV1A_32, 1970454601u, 4250494789u},      {MR_HASH_HSIEH, 3728705621u, 3886685354u},
        {MR_HASH_MURMUR, 3658586143u, 4000869906u},        {MR_HASH_JENKINS, 3412207021u, 206070951u},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        cr_expect_eq(mr_hash(v[i].kind, cafe, 5), v[i].cafe, "%s(cafe)", mr_hash_name(v[i].kind));
        cr_expect_eq(mr_hash(v[i].kind, euro, 7), v[i].euro, "%s(euro)", mr_hash_name(v[i].kind));
    }
}

Test(hash, fnv1a_64_xors_the_sign_extended_byte)
{
    /* One step by hand: 0x80 widens to 0xffffff80 before the xor. */
    uint32_t want = (0x84222325u ^ 0xffffff80u) * 0x1b3u;
    cr_expect_eq(mr_hash(MR_HASH_FNV1A_64, "\x80", 1), want);
    cr_expect_neq(mr_hash(MR_HASH_FNV1A_64, "\x80", 1), (0x84222325u ^ 0x80u) * 0x1b3u);
}

Test(hash, empty_key_hashes_to_each_seed)
{
    cr_expect_eq(mr_hash(MR_HASH_FNV1A_64, "", 0), 0x84222325u);
    cr_expect_eq(mr_hash(MR_HASH_FNV1_32, "", 0), 0x811c9dc5u);
    cr_expect_eq(mr_hash(MR_HASH_ONE_AT_A_TIME, "", 0), 0u);
    cr_expect_eq(mr_hash(MR_HASH_HSIEH, "", 0), 0u);
    cr_expect_eq(mr_hash(MR_HASH_MURMUR, "", 0), 0u);
    cr_expect_eq(mr_hash(MR_HASH_JENKINS, "", 0), 0xdeadbeefu + 13u);
    cr_expect_eq(mr_hash(MR_HASH_CRC32A, "", 0), 0u);
}

Test(hash, crc32_is_the_15_bit_libmemcached_form_of_crc32a)
{
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(key, sizeof(key), "key:%d", i);
        uint32_t full = mr_hash(MR_HASH_CRC32A, key, (size_t)len);
        cr_expect_eq(mr_hash(MR_HASH_CRC32, key, (size_t)len), (full >> 16) & 0x7fff);
    }
}

/* A single byte exercises exactly one table entry: compare with bitwise CRCs. */
Test(hash, crc_tables_match_bitwise_crcs)
{
    for (unsigned b = 0; b < 256; b++) {
        char key = (char)b;
        uint32_t c16 = b << 8;
        for (int i = 0; i < 8; i++)
            c16 = (c16 & 0x8000) ? ((c16 << 1) ^ 0x1021) & 0xffff : (c16 << 1) & 0xffff;
        uint32_t c32 = 0xffffffffu ^ b;
        for (int i = 0; i < 8; i++)
            c32 = (c32 & 1) ? (c32 >> 1) ^ 0xedb88320u : c32 >> 1;
        cr_expect_eq(mr_hash(MR_HASH_CRC16, &key, 1), c16, "crc16 byte %u", b);
        cr_expect_eq(mr_hash(MR_HASH_CRC32A, &key, 1), ~c32, "crc32a byte %u", b);
    }
}

static void md5_hex(const void *data, size_t len, char out[33])
{
    uint8_t d[16];
    mr_md5(data, len, d);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

Test(md5, rfc1321_test_suite)
{
    static const char *v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    char hex[33];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        md5_hex(v[i][0], strlen(v[i][0]), hex);
        cr_expect_str_eq(hex, v[i][1], "md5(\"%s\")", v[i][0]);
    }
}

/* 55/56 and 119/120 bytes are where the length field stops fitting in the
 * last block; 63/64/65 straddle a block. */
Test(md5, padding_at_block_boundaries)
{
    static const struct {
        size_t len;
        const char *want;
    } v[] = {
        {55, "ef1772b6dff9a122358552954ad0df65"},  {56, "3b0c8ac703f828b04c6c197006d17218"},
        {63, "b06521f39153d618550606be297466d5"},  {64, "014842d480b571495a4a0363793f7367"},
        {65, "c743a45e0d2e6a95cb859adae0248435"},  {119, "8a7bd0732ed6a28ce75f6dabc90e1613"},
        {120, "5f61c0ccad4cac44c75ff505e1f1e537"}, {1000, "cabe45dcc9ae5b66ba86600cca6b8ba8"},
    };
    char buf[1000], hex[33];
    memset(buf, 'a', sizeof(buf));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        md5_hex(buf, v[i].len, hex);
        cr_expect_str_eq(hex, v[i].want, "md5 of %zu x 'a'", v[i].len);
    }
}

Test(md5, split_updates_equal_one_shot)
{
    char buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 7 + 3);
    uint8_t whole[16];
    mr_md5(buf, sizeof(buf), whole);
    for (size_t cut = 0; cut <= sizeof(buf); cut += 13) {
        mr_md5_ctx ctx;
        uint8_t parts[16];
        mr_md5_init(&ctx);
        mr_md5_update(&ctx, buf, cut);
        mr_md5_update(&ctx, buf + cut, sizeof(buf) - cut);
        mr_md5_final(&ctx, parts);
        cr_expect_arr_eq(parts, whole, 16, "split at %zu", cut);
    }
}

Test(hash_names, every_kind_round_trips_through_its_twemproxy_name)
{
    for (int k = 0; k < MR_HASH_COUNT; k++) {
        mr_hash_kind back;
        cr_assert_not_null(mr_hash_name((mr_hash_kind)k));
        cr_assert_not_null(mr_hash_function((mr_hash_kind)k));
        cr_expect_eq(mr_hash_from_name(mr_hash_name((mr_hash_kind)k), &back), 0);
        cr_expect_eq(back, (mr_hash_kind)k);
    }
    mr_hash_kind kind;
    cr_expect_eq(mr_hash_from_name("fnv1a_64", &kind), 0);
    cr_expect_eq(kind, MR_HASH_FNV1A_64);
}

Test(hash_names, unknown_or_misspelled_names_are_rejected)
{
    mr_hash_kind kind = MR_HASH_MD5;
    cr_expect_eq(mr_hash_from_name("sha1", &kind), -1);
    cr_expect_eq(mr_hash_from_name("FNV1A_64", &kind), -1);
    cr_expect_eq(mr_hash_from_name("", &kind), -1);
    cr_expect_eq(kind, MR_HASH_MD5, "out is untouched on failure");
    cr_expect_null(mr_hash_name(MR_HASH_COUNT));
    cr_expect_null(mr_hash_function(MR_HASH_COUNT));
}

static void expect_span(const char *key, const char *tag, const char *want)
{
    const char *out;
    size_t len;
    mr_hash_tag_span(key, strlen(key), tag, &out, &len);
    cr_expect_eq(len, strlen(want), "span of \"%s\" with \"%s\"", key, tag);
    cr_expect(strncmp(out, want, len) == 0, "span of \"%s\" with \"%s\"", key, tag);
}

Test(hash_tag, span_between_tag_chars_is_hashed)
{
    expect_span("{user:1}:name", "{}", "user:1");
    expect_span("session:{42}", "{}", "42");
    expect_span("a$xy$b", "$$", "xy");
}

Test(hash_tag, first_open_then_first_close_after_it)
{
    expect_span("a{b}c{d}", "{}", "b");
    expect_span("}x{y}", "{}", "y");
    expect_span("{a{b}", "{}", "a{b");
}

Test(hash_tag, whole_key_without_a_complete_non_empty_tag)
{
    expect_span("plain", "{}", "plain");
    expect_span("open{only", "{}", "open{only");
    expect_span("close}only{", "{}", "close}only{");
    /* An empty span falls back to the whole key, even with a later pair. */
    expect_span("{}abc", "{}", "{}abc");
    expect_span("{}{x}", "{}", "{}{x}");
}
