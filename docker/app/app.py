"""Stands in for an application next to its memrelay sidecar.

It talks to memrelay on 127.0.0.1:22122 (the sidecar shares this container's
network namespace) with pymemcache, as any memcached client would: a set,
a get and a 10-key get_many every second, with a line of counts every 10 s.
Errors are counted and the loop goes on: memrelay may start after the app.
"""
import os
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

ADDR = (os.environ.get("MEMRELAY_HOST", "127.0.0.1"), int(os.environ.get("MEMRELAY_PORT", "22122")))


def main():
    client = Client(ADDR, connect_timeout=2, timeout=2)
    ok = errors = hits = 0
    n = 0
    while True:
        n += 1
        try:
            client.set("app:counter", str(n).encode(), expire=300)
            if client.get("app:counter") == str(n).encode():
                ok += 1
            keys = ["app:k%d" % i for i in range(10)]
            client.set_many({k: b"v" for k in keys}, expire=300)
            hits += len(client.get_many(keys))
        except (MemcacheError, OSError) as e:
            errors += 1
            print("error: %s" % e, flush=True)
            client.close()
        if n % 10 == 0:
            print("round trips ok %d, get_many hits %d, errors %d" % (ok, hits, errors), flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
