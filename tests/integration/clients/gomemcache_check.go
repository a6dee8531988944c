// gomemcache_check: a fixed script of operations through Go's gomemcache
// (github.com/bradfitz/gomemcache, Debian's golang-github-bradfitz-gomemcache-dev)
// against one address, one line per operation on stdout.
//
//	gomemcache_check HOST:PORT
//
// The output is deterministic for a given server behaviour (CAS ids are
// masked, maps printed in key order), so two runs, one straight to memcached
// and one through memrelay, must print the same lines. Built by
// test_clients_ecosystem.py with GO111MODULE=off against /usr/share/gocode.
//
// Debian's gomemcache (2014) has no Append/Prepend: those steps are absent.
package main

import (
	"crypto/md5"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

var mc *memcache.Client

func say(step string, result string) {
	fmt.Printf("%s: %s\n", step, result)
}

// show prints a value: quoted with \xNN escapes when short, length and digest when long.
func show(v []byte) string {
	if len(v) > 64 {
		return fmt.Sprintf("len=%d md5=%x", len(v), md5.Sum(v))
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// word turns a gomemcache error into the script's result words.
func word(err error) string {
	switch err {
	case nil:
		return "ok"
	case memcache.ErrCacheMiss:
		return "notfound"
	case memcache.ErrNotStored:
		return "notstored"
	case memcache.ErrCASConflict:
		return "exists"
	case memcache.ErrMalformedKey:
		return "error(malformed key)"
	}
	return "error(" + err.Error() + ")"
}

func set(step, key string, value []byte, flags uint32) {
	say(step, word(mc.Set(&memcache.Item{Key: key, Value: value, Flags: flags})))
}

func get(step, key string) *memcache.Item {
	it, err := mc.Get(key)
	switch {
	case err == memcache.ErrCacheMiss:
		say(step, "miss")
	case err != nil:
		say(step, word(err))
	case it.Flags != 0:
		say(step, fmt.Sprintf("%s flags=%d", show(it.Value), it.Flags))
	default:
		say(step, show(it.Value))
	}
	return it
}

func number(step string, v uint64, err error) {
	if err != nil {
		say(step, word(err))
	} else {
		say(step, fmt.Sprintf("%d", v))
	}
}

// pattern: n bytes of a fixed pseudo-random sequence (no RNG: the same everywhere).
func pattern(n int, seed uint32) []byte {
	out := make([]byte, n)
	x := seed
	for i := range out {
		x = x*1103515245 + 12345
		out[i] = byte(x >> 16)
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gomemcache_check HOST:PORT")
		os.Exit(2)
	}
	mc = memcache.New(os.Args[1])
	mc.Timeout = 5 * time.Second

	// set / get / delete
	set("set a", "eco:a", []byte("1"), 0)
	get("get a", "eco:a")
	get("get missing", "eco:missing")
	say("delete a", word(mc.Delete("eco:a")))
	say("delete a again", word(mc.Delete("eco:a")))
	get("get a after delete", "eco:a")
	set("set empty value", "eco:empty", []byte{}, 0)
	get("get empty value", "eco:empty")
	set("set flags 42", "eco:flags", []byte("f"), 42)
	get("get flags 42", "eco:flags")
	set("set flags max", "eco:flagsmax", []byte("f"), 4294967295)
	get("get flags max", "eco:flagsmax")

	// get-multi: 100 keys, 60 stored (the first two of every five missing, the last key stored), 40 never stored
	keys := make([]string, 0, 100)
	stored := 0
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("eco:gm:%d", i)
		keys = append(keys, k)
		if i%5 >= 2 {
			if mc.Set(&memcache.Item{Key: k, Value: []byte(fmt.Sprintf("value-%d", i))}) == nil {
				stored++
			}
		}
	}
	say("getmulti set 60", fmt.Sprintf("%d stored", stored))
	items, err := mc.GetMulti(keys)
	if err != nil {
		say("getmulti 100 keys", word(err))
	} else {
		right := 0
		for i, k := range keys {
			if it, ok := items[k]; ok && string(it.Value) == fmt.Sprintf("value-%d", i) {
				right++
			}
		}
		say("getmulti 100 keys", fmt.Sprintf("%d hits, %d right", len(items), right))
		names := make([]string, 0, len(items))
		for k := range items {
			names = append(names, k)
		}
		sort.Strings(names)
		sum := md5.New()
		for _, k := range names {
			fmt.Fprintf(sum, "%s=%s;", k, items[k].Value)
		}
		say("getmulti digest", fmt.Sprintf("%x", sum.Sum(nil)))
	}

	// incr / decr
	set("set n 10", "eco:n", []byte("10"), 0)
	v, err := mc.Increment("eco:n", 5)
	number("incr n 5", v, err)
	v, err = mc.Decrement("eco:n", 20)
	number("decr n 20", v, err)
	v, err = mc.Increment("eco:n", 18446744073709551615)
	number("incr n 2^64-1", v, err)
	v, err = mc.Increment("eco:n", 1)
	number("incr n wraps", v, err)
	v, err = mc.Increment("eco:nmissing", 1)
	number("incr missing", v, err)
	set("set text", "eco:text", []byte("abc"), 0)
	v, err = mc.Increment("eco:text", 1)
	number("incr non-numeric", v, err)

	// add / replace
	say("add new", word(mc.Add(&memcache.Item{Key: "eco:k", Value: []byte("b")})))
	say("add existing", word(mc.Add(&memcache.Item{Key: "eco:k", Value: []byte("x")})))
	say("replace existing", word(mc.Replace(&memcache.Item{Key: "eco:k", Value: []byte("c")})))
	say("replace missing", word(mc.Replace(&memcache.Item{Key: "eco:kmissing", Value: []byte("x")})))
	get("get k after replace", "eco:k")

	// cas: gets, a swap with the token, a swap with the now stale token
	set("set c", "eco:c", []byte("x"), 0)
	it, err := mc.Get("eco:c")
	if err != nil {
		say("gets c", word(err))
	} else {
		say("gets c", show(it.Value)+" cas=set")
		stale := *it
		it.Value = []byte("y")
		say("cas c with its token", word(mc.CompareAndSwap(it)))
		stale.Value = []byte("z")
		say("cas c with a stale token", word(mc.CompareAndSwap(&stale)))
		get("get c after cas", "eco:c")
		say("delete c", word(mc.Delete("eco:c")))
		it.Value = []byte("w")
		say("cas c after delete", word(mc.CompareAndSwap(it)))
	}

	// touch
	say("set t", word(mc.Set(&memcache.Item{Key: "eco:t", Value: []byte("x"), Expiration: 1000})))
	say("touch t", word(mc.Touch("eco:t", 2000)))
	say("touch missing", word(mc.Touch("eco:tmissing", 10)))
	get("get t after touch", "eco:t")

	// a large value (about 500 KB) and binary bytes
	big := pattern(500000, 7)
	set("set big (500000 bytes)", "eco:big", big, 0)
	if it, err := mc.Get("eco:big"); err != nil {
		say("get big", word(err))
	} else {
		say("get big", fmt.Sprintf("%s same=%v", show(it.Value), string(it.Value) == string(big)))
	}
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	set("set all 256 byte values", "eco:bin", bin, 0)
	if it, err := mc.Get("eco:bin"); err != nil {
		say("get all 256 byte values", word(err))
	} else {
		say("get all 256 byte values", fmt.Sprintf("%s same=%v", show(it.Value), string(it.Value) == string(bin)))
	}
	set("set value with CRLF END", "eco:crlf", []byte("line\r\nEND\r\nVALUE x 0 1\r\n"), 0)
	get("get value with CRLF END", "eco:crlf")

	// keys with odd but legal bytes (gomemcache refuses bytes above 0x7e itself)
	odd := []string{
		"eco:punct!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
		"eco:" + strings.Repeat("k", 246),
		"\"quoted\"",
		"END",
		"VALUE",
	}
	for i, k := range odd {
		set(fmt.Sprintf("set odd key %d", i), k, []byte(fmt.Sprintf("odd-%d", i)), 0)
	}
	for i, k := range odd {
		get(fmt.Sprintf("get odd key %d", i), k)
	}
	items, err = mc.GetMulti(odd)
	if err != nil {
		say("getmulti odd keys", word(err))
	} else {
		say("getmulti odd keys", fmt.Sprintf("%d hits", len(items)))
	}
	set("set key 251 bytes", strings.Repeat("k", 251), []byte("x"), 0)
	set("set key with space", "eco:a b", []byte("x"), 0)
	set("set key with byte 0xc3", "eco:\xc3\xa9", []byte("x"), 0)

	// the connection is still good after all that
	get("get a final", "eco:k")
}
