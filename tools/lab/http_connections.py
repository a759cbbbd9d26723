#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Long-lived HTTP/1.1 connections to a VIP, for LB-fleet faults (python3 stdlib only).

Opens CONNECTIONS keep-alive connections, spread over the given source addresses,
and sends GET / on each every INTERVAL ms for DURATION s. Prints one JSON object:

  connections         how many were opened
  requests            requests answered
  failed_requests     requests that got no answer (the connection is then reopened)
  broken_connections  connections that failed at least once
  backend_changes     connections whose answers came from more than one backend
  max_gap_ms          the longest a connection waited for an answer

Run inside the client's namespace (lab.sh): the VIP is reached as its routes say.
"""

import argparse
import http.client
import json
import threading
import time


def run_connection(vip, port, source, interval, timeout, deadline, result, lock):
    backend = None
    broken = changed = False
    answered = failed = 0
    max_gap = 0.0
    connection = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(vip, port, timeout=timeout, source_address=(source, 0))
            connection.request("GET", "/")
            reply = connection.getresponse()
            reply.read()
            answered += 1
            name = reply.getheader("X-Backend")
            if backend is not None and name != backend:
                changed = True
            backend = name
        except (OSError, http.client.HTTPException):
            failed += 1
            broken = True
            if connection is not None:
                connection.close()
            connection = None
        max_gap = max(max_gap, time.monotonic() - started)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    if connection is not None:
        connection.close()
    with lock:
        result["requests"] += answered
        result["failed_requests"] += failed
        result["broken_connections"] += int(broken)
        result["backend_changes"] += int(changed)
        result["max_gap_ms"] = max(result["max_gap_ms"], round(max_gap * 1000))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vip", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--source", action="append", required=True, help="a source address (repeatable)")
    parser.add_argument("--connections", type=int, default=60)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--duration", type=float, required=True, help="seconds (at most 600)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds an answer may take before the connection counts as broken (0.1..30)")
    args = parser.parse_args()
    if not 0.1 <= args.timeout <= 30:
        parser.error("--timeout 0.1..30")
    if not 1 <= args.connections <= 2000 or not 0 < args.duration <= 600 or not 10 <= args.interval_ms <= 10000:
        parser.error("--connections 1..2000, --duration (0, 600], --interval-ms 10..10000")
    result = {"connections": args.connections, "requests": 0, "failed_requests": 0, "broken_connections": 0,
              "backend_changes": 0, "max_gap_ms": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + args.duration
    threads = [
        threading.Thread(target=run_connection,
                         args=(args.vip, args.port, args.source[n % len(args.source)], args.interval_ms / 1000,
                               args.timeout, deadline, result, lock))
        for n in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
