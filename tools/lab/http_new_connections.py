#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""New HTTP connections to a VIP from many clients, for client affinity (python3 stdlib only).

Every source address opens PER_SOURCE connections one after the other (each from a new
port, so the router's multipath hash may give each to another LB), sends GET / and
closes. All sources run at once. Prints one JSON object:

  answers   {source: [backend, ...]}: X-Backend of each answer, null for none
  failed    connections that got no answer within the timeout

Run inside the client's namespace (lab.sh): the VIP is reached as its routes say.
"""

import argparse
import http.client
import json
import threading


def run_source(vip, port, source, count, timeout, answers, lock):
    seen = []
    for _ in range(count):
        connection = http.client.HTTPConnection(vip, port, timeout=timeout, source_address=(source, 0))
        try:
            connection.request("GET", "/", headers={"Connection": "close"})
            reply = connection.getresponse()
            reply.read()
            seen.append(reply.getheader("X-Backend"))
        except (OSError, http.client.HTTPException):
            seen.append(None)
        finally:
            connection.close()
    with lock:
        answers[source] = seen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vip", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--source", action="append", required=True, help="a source address (repeatable)")
    parser.add_argument("--per-source", type=int, default=1, help="connections per source, one after another")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds an answer may take (0.1..30)")
    args = parser.parse_args()
    if not 0.1 <= args.timeout <= 30 or not 1 <= args.per_source <= 100 or len(args.source) > 1000:
        parser.error("--timeout 0.1..30, --per-source 1..100, at most 1000 sources")
    answers = {}
    lock = threading.Lock()
    threads = [threading.Thread(target=run_source,
                                args=(args.vip, args.port, source, args.per_source, args.timeout, answers, lock))
               for source in dict.fromkeys(args.source)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = sum(backend is None for seen in answers.values() for backend in seen)
    print(json.dumps({"answers": answers, "failed": failed}))


if __name__ == "__main__":
    main()
