"""A one-server pool is invisible: the same bytes give the same reply bytes.

Each case is sent twice on fresh connections: straight to the backend
memcached, then through memrelay to that same memcached, with flush_all on
the backend before each run. The replies must be identical byte for byte
(after masking CAS ids and clock seconds, which differ between any two runs)
and so must the connection's fate (kept open or closed).

On the direct run most cases are followed by a sentinel (a meta-get miss
with an opaque) whose reply marks the end of memcached's replies (and is cut
off again);
cases that leave the connection waiting for data, or closed, are read until a
quiet period or the close. The proxied run sends the case bytes alone, reads
as many bytes as memcached gave, and then watches briefly for surplus bytes or
a close.

Where memrelay answers by itself (version, stats) the tests at the bottom
state what it must say instead.
"""

import re

import pytest

from harness import Conn, Pool, mask_volatile, parse_values

# A miss on a key no case uses, with an opaque: its reply cannot come from the case itself.
SENTINEL = b"mg __end_of_case__ O5150 k\r\n"
SENTINEL_REPLY = b"EN O5150 k__end_of_case__\r\n"


class Case:
    def __init__(self, name, data, sentinel=True):
        self.name = name
        self.data = data
        self.sentinel = sentinel


def C(name, data, sentinel=True):
    return pytest.param(Case(name, data, sentinel), id=name)


K250 = b"k" * 250
K251 = b"k" * 251
BIG = b"x" * 2_000_000
MANY_KEYS = b" ".join(b"key%d" % i for i in range(3000))

CASES = [
    # ---- retrieval
    C("get_miss", b"get k\r\n"),
    C("get_hit", b"set k 5 0 3\r\nabc\r\nget k\r\n"),
    C("get_multi_hits_and_misses", b"set a 1 0 1\r\nA\r\nset c 3 0 3\r\nCCC\r\nget a b c d\r\n"),
    C("get_duplicate_keys", b"set a 1 0 1\r\nA\r\nget a a b a\r\n"),
    C("get_no_key", b"get\r\n"),
    C("get_key_250_bytes", b"set " + K250 + b" 0 0 1\r\nx\r\nget " + K250 + b"\r\n"),
    C("get_key_251_bytes", b"get " + K251 + b"\r\n"),
    C("get_many_keys_one_line", b"set key7 0 0 1\r\n7\r\nget " + MANY_KEYS + b"\r\n"),
    C("get_extra_spaces", b"set a 0 0 1\r\nA\r\nget  a   b \r\n"),
    C("get_lf_only_line_ending", b"set a 0 0 1\n1\r\nget a\n"),
    C("get_control_byte_in_key", b"get a\x01b\r\n"),
    C("get_nul_in_key", b"get a\x00b\r\n"),
    C("gets_hit", b"set k 0 0 2\r\nhi\r\ngets k\r\n"),
    C("gets_multi", b"set a 0 0 1\r\nA\r\nset b 0 0 1\r\nB\r\ngets a x b\r\n"),
    C("gets_miss", b"gets k\r\n"),
    C("gat_hit", b"set k 7 0 2\r\nhi\r\ngat 100 k\r\nget k\r\n"),
    C("gat_miss", b"gat 100 k\r\n"),
    C("gat_multi", b"set a 0 0 1\r\nA\r\ngat 100 a b a\r\n"),
    C("gat_negative_exptime_expires", b"set k 0 0 1\r\nx\r\ngat -1 k\r\nget k\r\n"),
    C("gat_no_key", b"gat 100\r\n"),
    C("gat_no_args", b"gat\r\n"),
    C("gat_bad_exptime", b"gat abc k\r\n"),
    C("gats_hit", b"set k 0 0 1\r\nx\r\ngats 100 k\r\n"),
    C("gats_miss", b"gats 100 k\r\n"),
    # ---- storage
    C("set_stored", b"set k 0 0 1\r\nx\r\n"),
    C("set_zero_length_value", b"set k 0 0 0\r\n\r\nget k\r\n"),
    C("set_value_with_crlf_and_nul", b"set k 0 0 8\r\na\r\nb\x00c\r\n\r\nget k\r\n"),
    C("set_flags_max_u32", b"set k 4294967295 0 1\r\nx\r\nget k\r\n"),
    C("set_flags_above_u32", b"set k 4294967296 0 1\r\nx\r\nget k\r\n"),
    C("set_flags_negative", b"set k -1 0 1\r\nx\r\nget k\r\n"),
    C("set_flags_not_a_number", b"set k abc 0 1\r\nx\r\n"),
    C("set_exptime_negative_expires", b"set k 0 -1 1\r\nx\r\nget k\r\n"),
    C("set_exptime_relative", b"set k 0 100 1\r\nx\r\nget k\r\n"),
    C("set_exptime_absolute_past", b"set k 0 1000000000 1\r\nx\r\nget k\r\n"),
    C("set_exptime_not_a_number", b"set k 0 abc 1\r\nx\r\n"),
    C("set_length_negative", b"set k 0 0 -1\r\n"),
    C("set_length_huge_number", b"set k 0 0 99999999999999999999\r\n"),
    C("set_length_not_a_number", b"set k 0 0 x\r\n"),
    C("set_missing_length", b"set k 0 0\r\n"),
    C("set_missing_everything", b"set\r\n"),
    C("set_too_many_tokens", b"set k 0 0 1 2 3 4 5 6 7\r\nx\r\n"),
    C("set_noreply", b"set k 0 0 1 noreply\r\nx\r\nget k\r\n"),
    C("set_noreply_misspelled", b"set k 0 0 1 norepl\r\nx\r\n"),
    C("set_bad_data_chunk", b"set k 0 0 1\r\nab\r\nget k\r\n"),
    C("set_bad_data_chunk_noreply", b"set k 0 0 1 noreply\r\nab\r\nget k\r\n"),
    C("set_data_without_crlf", b"set k 0 0 3\r\nabcXY\r\nget k\r\n"),
    C("set_key_250_bytes", b"set " + K250 + b" 0 0 1\r\nx\r\n"),
    C("set_key_251_bytes", b"set " + K251 + b" 0 0 1\r\nx\r\nget k\r\n"),
    C("set_large_value_512k", b"set k 0 0 524288\r\n" + b"v" * 524288 + b"\r\nget k\r\n"),
    C("set_value_at_item_limit", b"set k 0 0 1048576\r\n" + b"v" * 1048576 + b"\r\nget k\r\n"),
    C("set_value_over_item_limit_swallowed", b"set k 0 0 2000000\r\n" + BIG + b"\r\nget k\r\n"),
    C("set_value_over_item_limit_noreply", b"set k 0 0 2000000 noreply\r\n" + BIG + b"\r\nget k\r\n"),
    C("add_new", b"add k 0 0 1\r\nx\r\nget k\r\n"),
    C("add_existing", b"set k 0 0 1\r\nx\r\nadd k 0 0 1\r\ny\r\nget k\r\n"),
    C("add_noreply_existing", b"set k 0 0 1\r\nx\r\nadd k 0 0 1 noreply\r\ny\r\nget k\r\n"),
    C("replace_missing", b"replace k 0 0 1\r\nx\r\nget k\r\n"),
    C("replace_existing", b"set k 0 0 1\r\nx\r\nreplace k 3 0 2\r\nyy\r\nget k\r\n"),
    C("append_missing", b"append k 0 0 1\r\nx\r\n"),
    C("append_existing_keeps_flags", b"set k 5 0 1\r\nx\r\nappend k 9 0 2\r\nyz\r\nget k\r\n"),
    C("prepend_missing", b"prepend k 0 0 1\r\nx\r\n"),
    C("prepend_existing", b"set k 0 0 1\r\nx\r\nprepend k 0 0 2\r\nyz\r\nget k\r\n"),
    C("append_noreply", b"set k 0 0 1\r\nx\r\nappend k 0 0 1 noreply\r\ny\r\nget k\r\n"),
    C("cas_not_found", b"cas k 0 0 1 5\r\nx\r\n"),
    C("cas_stale_unique_exists", b"set k 0 0 1\r\nx\r\ncas k 0 0 1 999999999999\r\ny\r\nget k\r\n"),
    C("cas_missing_unique", b"cas k 0 0 1\r\nx\r\n"),
    C("cas_negative_unique", b"cas k 0 0 1 -5\r\nx\r\n"),
    C("cas_noreply_stale", b"set k 0 0 1\r\nx\r\ncas k 0 0 1 999999999999 noreply\r\ny\r\nget k\r\n"),
    # ---- delete, arithmetic, touch
    C("delete_missing", b"delete k\r\n"),
    C("delete_existing", b"set k 0 0 1\r\nx\r\ndelete k\r\nget k\r\n"),
    C("delete_with_zero_time", b"set k 0 0 1\r\nx\r\ndelete k 0\r\n"),
    C("delete_with_nonzero_time", b"set k 0 0 1\r\nx\r\ndelete k 5\r\nget k\r\n"),
    C("delete_noreply", b"set k 0 0 1\r\nx\r\ndelete k noreply\r\nget k\r\n"),
    C("delete_no_key", b"delete\r\n"),
    C("delete_too_many_tokens", b"delete a b c d\r\n"),
    C("incr_missing", b"incr n 1\r\n"),
    C("incr_basic", b"set n 0 0 1\r\n5\r\nincr n 10\r\nget n\r\n"),
    C("incr_grows_length", b"set n 0 0 1\r\n9\r\nincr n 1\r\nget n\r\n"),
    C("decr_basic", b"set n 0 0 2\r\n10\r\ndecr n 1\r\nget n\r\n"),
    C("decr_floors_at_zero", b"set n 0 0 1\r\n5\r\ndecr n 10\r\n"),
    C("incr_wraps_at_2_64", b"set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\n"),
    C("incr_delta_max_u64", b"set n 0 0 1\r\n5\r\nincr n 18446744073709551615\r\n"),
    C("incr_delta_above_u64", b"set n 0 0 1\r\n5\r\nincr n 18446744073709551616\r\n"),
    C("incr_delta_negative", b"set n 0 0 1\r\n5\r\nincr n -1\r\n"),
    C("incr_delta_not_a_number", b"set n 0 0 1\r\n5\r\nincr n abc\r\n"),
    C("incr_non_numeric_value", b"set n 0 0 2\r\nab\r\nincr n 1\r\n"),
    C("incr_missing_delta", b"incr n\r\n"),
    C("incr_too_many_tokens", b"incr n 1 2 3\r\n"),
    C("incr_noreply", b"set n 0 0 1\r\n5\r\nincr n 1 noreply\r\nget n\r\n"),
    C("decr_noreply_missing", b"decr n 1 noreply\r\n"),
    C("touch_missing", b"touch k 10\r\n"),
    C("touch_existing", b"set k 0 0 1\r\nx\r\ntouch k 100\r\n"),
    C("touch_negative_expires", b"set k 0 0 1\r\nx\r\ntouch k -1\r\nget k\r\n"),
    C("touch_noreply", b"set k 0 0 1\r\nx\r\ntouch k 100 noreply\r\nget k\r\n"),
    C("touch_missing_exptime", b"touch k\r\n"),
    C("touch_bad_exptime", b"touch k abc\r\n"),
    # ---- misc commands
    C("verbosity_1", b"verbosity 1\r\n"),
    C("verbosity_0", b"verbosity 0\r\n"),
    C("verbosity_noreply", b"verbosity 0 noreply\r\n"),
    C("verbosity_only_noreply", b"verbosity noreply\r\n"),
    C("verbosity_no_arg", b"verbosity\r\n"),
    C("verbosity_too_many_tokens", b"verbosity 1 2 3\r\n"),
    C("flush_all", b"set k 0 0 1\r\nx\r\nflush_all\r\nget k\r\n"),
    C("flush_all_zero", b"flush_all 0\r\n"),
    C("flush_all_noreply", b"flush_all noreply\r\n"),
    C("flush_all_delayed", b"set k 0 0 1\r\nx\r\nflush_all 100\r\nget k\r\n"),
    C("flush_all_negative", b"flush_all -1\r\n"),
    C("flush_all_not_a_number", b"flush_all abc\r\n"),
    C("quit", b"quit\r\n", sentinel=False),
    C("quit_after_pipelined_get", b"set k 0 0 1\r\nx\r\nget k\r\nquit\r\nget k\r\n", sentinel=False),
    C("pipelined_mix", b"set a 0 0 1\r\n1\r\nincr a 5\r\nget a b\r\ndelete a\r\nget a\r\nadd a 0 0 1\r\nz\r\n"
                       b"append a 0 0 1\r\ny\r\ngets a\r\n"),
    # ---- protocol errors
    C("unknown_command", b"foo bar\r\n"),
    C("uppercase_command", b"GET k\r\n"),
    C("empty_line", b"\r\n"),
    C("bare_lf", b"\n"),
    C("only_spaces", b"   \r\n"),
    C("unknown_then_valid", b"bogus\r\nset k 0 0 1\r\nx\r\nget k\r\n"),
    C("long_line_with_newline", b"x" * 3000 + b"\r\nget k\r\n"),
    C("long_set_key_line", b"set " + b"a" * 3000 + b" 0 0 1\r\nx\r\n"),
    C("line_too_long_no_newline_closes", b"x" * 3000, sentinel=False),
    C("set_waiting_for_data", b"set k 0 0 10\r\nabc", sentinel=False),
    C("set_over_limit_waiting_for_data", b"set k 0 0 5000000\r\n", sentinel=False),
    C("partial_command_line", b"get k", sentinel=False),
    # ---- meta
    C("mn_alone", b"mn\r\n"),
    C("mn_with_token", b"mn extra\r\n"),
    C("mg_miss", b"mg k v\r\n"),
    C("mg_miss_no_flags", b"mg k\r\n"),
    C("mg_hit_no_flags", b"set k 0 0 1\r\nx\r\nmg k\r\n"),
    C("mg_hit_all_return_flags", b"ms k 2 F5 T0\r\nhi\r\nmg k v f s k O9 c t h l\r\n"),
    C("mg_ttl_flag", b"ms k 1 T100\r\nx\r\nmg k t v\r\n"),
    C("mg_touch_flag", b"set k 0 0 1\r\nx\r\nmg k T30 t v\r\n"),
    C("mg_no_lru_bump", b"set k 0 0 1\r\nx\r\nmg k u v h\r\nmg k h\r\n"),
    C("mg_quiet_miss_flushed_by_mn", b"mg a q v\r\nmg b q v k O1\r\nmn\r\n"),
    C("mg_quiet_hit_and_miss", b"set a 0 0 1\r\nA\r\nmg a q v k\r\nmg b q v k\r\nmn\r\n"),
    C("mg_opaque_and_key_echo", b"set k 0 0 1\r\nx\r\nmg k O123abc k v\r\nmg zz O7 k\r\n"),
    C("mg_opaque_too_long", b"mg k O" + b"1" * 33 + b"\r\n"),
    C("mg_base64_key_miss", b"mg YQ== b k v\r\n"),
    C("mg_base64_key_hit", b"set a 0 0 1\r\nA\r\nmg YQ== b k v\r\n"),
    C("mg_base64_binary_key", b"ms AAEC/w== 1 b\r\nz\r\nmg AAEC/w== b k v c\r\n"),
    C("mg_base64_invalid", b"mg !!! b v\r\n"),
    C("mg_vivify_on_miss", b"mg k N30 v\r\nmg k v\r\n"),
    C("mg_recache_flag", b"ms k 1 T10\r\nx\r\nmg k R30 v\r\nmg k R30 v\r\n"),
    C("mg_invalid_flag", b"mg k zzz\r\n"),
    C("mg_no_key", b"mg\r\n"),
    C("mg_key_250_bytes", b"ms " + K250 + b" 1\r\nx\r\nmg " + K250 + b" v k\r\n"),
    C("mg_key_251_bytes", b"mg " + K251 + b" v\r\n"),
    C("ms_basic", b"ms k 3\r\nabc\r\nget k\r\n"),
    C("ms_flags_ttl_and_returns", b"ms k 3 F7 T100 c k O5\r\nabc\r\nmg k f v\r\n"),
    C("ms_base64_key", b"ms YQ== 1 b k\r\nx\r\nget a\r\n"),
    C("ms_mode_add", b"ms k 1 ME\r\nx\r\nms k 1 ME\r\ny\r\nmg k v\r\n"),
    C("ms_mode_replace", b"ms k 1 MR\r\nx\r\nset k 0 0 1\r\nx\r\nms k 1 MR\r\ny\r\nmg k v\r\n"),
    C("ms_mode_append_prepend", b"ms k 1\r\nb\r\nms k 1 MA\r\nc\r\nms k 1 MP\r\na\r\nmg k v\r\n"),
    C("ms_mode_set", b"ms k 1 MS\r\nx\r\n"),
    C("ms_mode_invalid", b"ms k 1 MZ\r\nx\r\n"),
    C("ms_quiet", b"ms k 1 q\r\nx\r\nms k 1 q ME\r\ny\r\nmn\r\n"),
    C("ms_cas_not_found", b"ms k 1 C99999999\r\nx\r\n"),
    C("ms_cas_mismatch", b"set k 0 0 1\r\nx\r\nms k 1 C99999999\r\ny\r\n"),
    C("ms_invalidate_with_stale_cas", b"set k 0 0 1\r\nx\r\nms k 1 I C1\r\ny\r\nmg k v\r\n"),
    C("ms_invalid_flag_swallows_data", b"ms k 1 S1\r\nx\r\nget k\r\n"),
    C("ms_length_negative", b"ms k -1\r\n"),
    C("ms_missing_length", b"ms k\r\n"),
    C("ms_length_not_a_number", b"ms k x\r\n"),
    C("ms_no_key", b"ms\r\n"),
    C("ms_bad_data_chunk", b"ms k 1\r\nxy\r\nmg k v\r\n"),
    C("ms_over_item_limit_swallowed", b"ms k 2000000\r\n" + BIG + b"\r\nmg k v\r\n"),
    C("ms_key_251_bytes", b"ms " + K251 + b" 1\r\nx\r\n"),
    C("md_miss", b"md k\r\n"),
    C("md_hit", b"set k 0 0 1\r\nx\r\nmd k\r\nmg k v\r\n"),
    C("md_quiet", b"set k 0 0 1\r\nx\r\nmd k q\r\nmd k q\r\nmn\r\n"),
    C("md_opaque_key", b"set k 0 0 1\r\nx\r\nmd k O42 k\r\n"),
    C("md_cas_mismatch", b"set k 0 0 1\r\nx\r\nmd k C99999999\r\n"),
    C("md_invalidate_marks_stale", b"set k 0 0 1\r\nx\r\nmd k I T30\r\nmg k v c\r\nmg k v\r\n"),
    C("md_no_key", b"md\r\n"),
    C("md_base64_key", b"set a 0 0 1\r\nA\r\nmd YQ== b\r\nget a\r\n"),
    C("ma_miss", b"ma n\r\n"),
    C("ma_miss_quiet", b"ma n q\r\nmn\r\n"),
    C("ma_incr", b"set n 0 0 1\r\n5\r\nma n\r\nma n v\r\nma n D10 v\r\n"),
    C("ma_decr", b"set n 0 0 2\r\n10\r\nma n MD D3 v\r\nma n MD D100 v\r\n"),
    C("ma_autovivify", b"ma n N0 J13 v\r\nma n v\r\n"),
    # q hides the HD/VA of an increment but not of an item N has just created
    C("ma_quiet_existing", b"set n 0 0 1\r\n5\r\nma n q\r\nma n q v\r\nmn\r\n"),
    C("ma_quiet_vivify_creates", b"ma n N0 J1 q\r\nmn\r\n"),
    C("ma_quiet_vivify_creates_value", b"ma n N0 J1 q v\r\nmn\r\n"),
    C("ma_quiet_vivify_then_increments", b"ma n N0 J1 q\r\nma n N0 J1 q\r\nma n N0 J1 q v\r\nmn\r\n"),
    C("ma_quiet_vivify_existing", b"set n 0 0 1\r\n5\r\nma n N0 J1 q v\r\nmn\r\n"),
    C("ma_quiet_vivify_decr_key_opaque", b"ma n N0 J5 q MD v k O7\r\nma n N0 q MD k O8\r\nmn\r\n"),
    C("ma_quiet_vivify_ttl", b"ma n N0 J1 q t\r\nma n q t\r\nmn\r\n"),
    C("ma_quiet_vivify_base64", b"ma bg== N0 J1 q b\r\nma bg== N0 q b v\r\nget n\r\nmn\r\n"),
    C("ma_quiet_vivify_non_numeric", b"set n 0 0 1\r\nx\r\nma n N0 q\r\nmn\r\n"),
    C("ma_quiet_vivify_cas_mismatch", b"set n 0 0 1\r\n5\r\nma n N0 q C1\r\nmn\r\n"),
    C("ma_quiet_vivify_bad_flag", b"ma n N0 q D\r\nmn\r\n"),
    C("ma_quiet_vivify_lf_only", b"ma n N0 J3 q v\nma n N0 q v\nmn\n"),
    C("ma_quiet_vivify_pipelined_with_gets",
      b"ma a N0 q\r\nget a\r\nma a N0 q v\r\nmg a v\r\nma b N0 J9 q v\r\nmn\r\n"),
    C("ma_non_numeric", b"set n 0 0 1\r\nx\r\nma n\r\n"),
    C("ma_opaque_key_ttl", b"set n 0 0 1\r\n1\r\nma n O77 k t v\r\n"),
    C("ma_no_key", b"ma\r\n"),
    C("me_miss", b"me k\r\n"),
    C("me_hit", b"set k 0 0 1\r\nx\r\nme k\r\n"),
    C("me_no_key", b"me\r\n"),
    C("meta_unknown_command", b"mz k\r\n"),
    C("binary_magic_after_text", b"mn\r\n\x80\r\n\x80\x00\x00\x00\r\n"),
]


def run_direct(addr, case):
    """(reply bytes, closed) from memcached itself, on a fresh connection.

    The sentinel (when the case allows one) tells when memcached is done; its
    own reply is cut off again.
    """
    with Conn(addr, timeout=5.0) as c:
        if case.sentinel:
            c.send(case.data + SENTINEL, timeout=20)
            reply = c.recv_until_endswith(SENTINEL_REPLY, timeout=5.0)
            assert reply.endswith(SENTINEL_REPLY), "memcached did not answer the sentinel: %r" % reply[-200:]
            reply = reply[:-len(SENTINEL_REPLY)]
        else:
            c.send(case.data, timeout=20)
            reply = c.recv_idle(idle=0.3, timeout=5.0)
        return reply, c.closed


def run_proxied(addr, case, expect):
    """(reply bytes, closed) through the proxy for the same case bytes (no sentinel).

    Reads as many bytes as memcached gave, then watches a little longer for
    surplus bytes or a close.
    """
    with Conn(addr, timeout=5.0) as c:
        c.send(case.data, timeout=20)
        reply = c.recv_exact(len(expect[0]), timeout=3.0)
        if expect[1]:
            c.wait_closed(timeout=3.0)
        reply += c.recv_idle(idle=0.15, timeout=0.15)
        return reply, c.closed


@pytest.mark.parametrize("case", CASES)
def test_same_reply_bytes_as_memcached(proxy, case):
    backend = proxy.backend
    direct = run_direct(backend.addr, case)
    backend.flush()
    proxied = run_proxied(proxy.addr, case, direct)
    backend.flush()
    assert mask_volatile(proxied[0]) == mask_volatile(direct[0]), "reply bytes differ"
    assert proxied[1] == direct[1], "memcached %s the connection, memrelay %s it" % (
        "closed" if direct[1] else "kept", "closed" if proxied[1] else "kept")


def test_table_cases_have_unique_names():
    names = [p.values[0].name for p in CASES]
    assert len(names) == len(set(names))


# ---- conversations: the second request depends on the first reply


def _cas_conversation(addr):
    """gets, cas with that unique (succeeds), cas again with it (now stale)."""
    with Conn(addr) as c:
        out = [c.request(b"set k 0 0 1\r\nx\r\n")]
        r = c.request(b"gets k\r\n")
        out.append(r)
        unique = parse_values(r)[0][2]
        out.append(c.request(b"cas k 0 0 1 %d\r\ny\r\n" % unique))
        out.append(c.request(b"cas k 0 0 1 %d\r\nz\r\n" % unique))
        r = c.request(b"mg k c v\r\n")
        out.append(r)
        meta_cas = int(r.split(b"\r\n")[0].split(b" ")[2][1:])
        out.append(c.request(b"ms k 1 C%d\r\nm\r\n" % meta_cas))
        out.append(c.request(b"md k C%d q\r\nmd k C%d\r\n" % (meta_cas, meta_cas)))
        out.append(c.request(b"get k\r\n"))
        return out


def test_cas_conversation_same_as_memcached(proxy):
    direct = _cas_conversation(proxy.backend.addr)
    proxy.backend.flush()
    proxied = _cas_conversation(proxy.addr)
    assert [mask_volatile(r) for r in proxied] == [mask_volatile(r) for r in direct]
    assert proxied[2] == b"STORED\r\n" and proxied[3] == b"EXISTS\r\n"
    assert proxied[5] == b"HD\r\n"


def test_gets_cas_unique_is_the_backends(proxy):
    with proxy.conn() as c:
        assert c.request(b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
        through = parse_values(c.request(b"gets k\r\n"))[0][2]
    with proxy.backend.conn() as d:
        direct = parse_values(d.request(b"gets k\r\n"))[0][2]
    assert through == direct


# ---- where memrelay answers by itself


def test_version_reply_is_one_version_line(proxy_conn):
    reply = proxy_conn.request(b"version\r\n")
    assert reply.startswith(b"VERSION ") and reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, reply
    assert len(reply.split(b" ")) == 2, reply
    assert proxy_conn.request(b"mn\r\n") == b"MN\r\n"


def test_version_with_extra_token_answers_version(proxy_conn):
    assert proxy_conn.request(b"version 1\r\n").startswith(b"VERSION ")


def test_stats_reply_is_stat_lines_then_end(proxy_conn):
    proxy_conn.send(b"stats\r\n")
    reply = proxy_conn.recv_until_term(b"END\r\n", timeout=5)
    assert reply.endswith(b"END\r\n"), reply[-200:]
    lines = reply.split(b"\r\n")[:-2]
    assert lines, "no STAT lines"
    for line in lines:
        parts = line.split(b" ")
        assert parts[0] == b"STAT" and len(parts) >= 3, line
    assert proxy_conn.request(b"mn\r\n") == b"MN\r\n", "connection unusable after stats"


# ---- stats settings: memrelay's own settings in memcached's grammar

# `STAT <name> <value>\r\n` lines, then `END\r\n`: names are one token of
# printable bytes, values the rest of the line (memcached's own grammar).
_STAT_LINE = re.compile(rb"STAT ([!-~]+) ([ -~]+)\r\n")


def _stat_settings(conn):
    conn.send(b"stats settings\r\n")
    reply = conn.recv_until_term(b"END\r\n", timeout=5)
    assert reply.endswith(b"END\r\n"), reply[-200:]
    body = reply[:-len(b"END\r\n")]
    lines = re.findall(rb"[^\n]*\n", body)
    assert b"".join(lines) == body, "bytes after the last line: %r" % body[-100:]
    out = {}
    for line in lines:
        m = _STAT_LINE.fullmatch(line)
        assert m, "not a STAT line: %r" % line
        assert m.group(1) not in out, "%r twice" % m.group(1)
        out[m.group(1).decode()] = m.group(2).decode()
    return out


# The settings memrelay reports under memcached's names (docs/protocol.md).
MEMCACHED_NAMED_SETTINGS = ["maxconns", "tcpport", "udpport", "inter", "domain_socket", "shutdown_command",
                            "num_threads", "tcp_backlog", "binding_protocol", "auth_enabled_sasl",
                            "auth_enabled_ascii", "item_size_max", "ssl_enabled"]


@pytest.mark.needs_memrelay
def test_stats_settings_names_follow_memcached(memcached_factory, relay_factory):
    mc = memcached_factory()
    relay = relay_factory({"alpha": Pool([mc])})
    with mc.conn() as d:
        theirs = _stat_settings(d)
    with relay.conn() as c:
        ours = _stat_settings(c)
        assert c.request(b"mn\r\n") == b"MN\r\n", "connection unusable after stats settings"
    # Every memcached-named setting is one memcached has, in memcached's order.
    names = [n for n in ours if n in theirs]
    assert names == MEMCACHED_NAMED_SETTINGS
    order = list(theirs)
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)
    # memcached's spelling of "nothing" and of booleans
    assert ours["udpport"] == "0" and ours["domain_socket"] == "NULL" and ours["ssl_enabled"] == "no"
    assert ours["auth_enabled_sasl"] == theirs["auth_enabled_sasl"] == "no"
    assert ours["shutdown_command"] == theirs["shutdown_command"] == "no"
    assert ours["binding_protocol"] == theirs["binding_protocol"] == "auto-negotiate"


@pytest.mark.needs_memrelay
def test_stats_settings_are_the_listening_pools(memcached_factory, relay_factory):
    mc = memcached_factory()
    relay = relay_factory({
        "alpha": Pool([mc], item_size_max=2097152, timeout=750, client_connections=40, backlog=77,
                      server_connections=3, client_output_limit=65536, client_idle_timeout=90000),
        "beta": Pool([mc], hash="md5", hash_tag="{}", distribution="modula"),
    }, threads=3, process_settings={"shutdown_timeout": 2500})
    with relay.conn("alpha") as c:
        a = _stat_settings(c)
    with relay.conn("beta") as c:
        b = _stat_settings(c)
    host, port = relay.addr("alpha")
    assert (a["tcpport"], a["inter"], a["listen"]) == (str(port), host, "%s:%d" % (host, port))
    assert b["tcpport"] == str(relay.addr("beta")[1])
    assert a["num_threads"] == b["num_threads"] == "3"
    assert a["item_size_max"] == "2097152" and b["item_size_max"] == "1048576"
    assert a["maxconns"] == a["client_connections"] == "40"
    assert a["tcp_backlog"] == "77" and b["tcp_backlog"] == "512"
    assert (a["pool"], b["pool"]) == ("alpha", "beta")
    assert a["timeout"] == "750" and a["server_connections"] == "3"
    assert a["client_output_limit"] == "65536" and a["client_idle_timeout"] == "90000"
    assert (b["hash"], b["hash_tag"], b["distribution"]) == ("md5", "{}", "modula")
    assert (a["hash"], a["hash_tag"], a["distribution"]) == ("fnv1a_64", "NULL", "ketama")
    assert a["shutdown_timeout"] == "2500" and a["log_level"] == "info"
    assert a["binding_protocol"] == "auto-negotiate" and a["auth_enabled_ascii"] == "no"
    # Without client_connections the open-file limit is what bounds connections.
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert b["client_connections"] == "0" and int(b["maxconns"]) > 0
    assert soft == resource.RLIM_INFINITY or int(b["maxconns"]) <= soft
