#!/usr/bin/env python3
"""Steady POST load against a MultiVAC server that records every request's outcome.

    load.py URL PREFIX --rate R --seconds S [--stop-file F] [--workers W] --out FILE.json

Each request is `POST URL/multivac/data` with the form field data="<PREFIX><n> cosmos",
n = 1, 2, ...: one new word per datum, so what was processed can be counted. Requests
start at a steady rate R (per second) until S seconds have passed or F exists, whichever
comes first; W threads send them, each on a new TCP connection (as a client behind a
Service would after a pod went away: no connection is reused across a rollout).

Every request ends in exactly one outcome class:
  accepted     202: the datum is in the queue (the app's contract)
  refused      the connection was refused or timed out before anything was sent:
               the datum was certainly not queued
  http_<code>  the server answered another status (e.g. http_503): not queued
  ambiguous    the connection broke or timed out after the request was sent: the
               datum may or may not have been queued

The JSON written to FILE has the counts per class, the errors behind `refused` and
`ambiguous` (errno names), the first and last time (seconds since the start, and
wall-clock) a request was not accepted, and the achieved rate. The exit status is
0 whatever the outcomes: judging them is the caller's job.
"""

import argparse
import errno
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
from collections import Counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("prefix")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--stop-file")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    u = urllib.parse.urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    limit = int(args.rate * args.seconds)  # never more requests than this

    lock = threading.Lock()
    outcomes = Counter()
    errors = Counter()
    bad_times = []
    bad_wall = []
    state = {"next": 0, "stop": False}
    start = time.monotonic()

    def take():
        """The next datum number once its start time has come, or None to stop."""
        with lock:
            if state["stop"] or state["next"] >= limit:
                return None
            n = state["next"]
            state["next"] += 1
        due = start + n / args.rate
        while True:
            now = time.monotonic()
            if now - start >= args.seconds or (args.stop_file and os.path.exists(args.stop_file)):
                with lock:
                    state["stop"] = True
                return None
            if now >= due:
                return n + 1
            time.sleep(min(due - now, 0.05))

    def why(e):
        if isinstance(e, socket.timeout):
            return "timeout"
        if isinstance(e, OSError) and e.errno:
            return errno.errorcode.get(e.errno, str(e.errno))
        return type(e).__name__

    def one(n):
        """(outcome class, error name or None)"""
        body = urllib.parse.urlencode({"data": f"{args.prefix}{n} cosmos"})
        conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
        try:
            try:
                conn.connect()
            except OSError as e:
                return "refused", why(e)
            try:
                conn.request("POST", "/multivac/data", body=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                return "ambiguous", why(e)
            return ("accepted" if resp.status == 202 else f"http_{resp.status}"), None
        finally:
            conn.close()

    def worker():
        while True:
            n = take()
            if n is None:
                return
            t = time.monotonic() - start
            wall = time.time()
            outcome, error = one(n)
            with lock:
                outcomes[outcome] += 1
                if error:
                    errors[f"{outcome}:{error}"] += 1
                if outcome != "accepted":
                    bad_times.append(round(t, 2))
                    bad_wall.append(wall)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - start
    sent = sum(outcomes.values())
    result = {
        "prefix": args.prefix,
        "sent": sent,
        "accepted": outcomes.get("accepted", 0),
        "not_accepted": sent - outcomes.get("accepted", 0),
        "ambiguous": outcomes.get("ambiguous", 0),
        "outcomes": dict(sorted(outcomes.items())),
        "errors": dict(sorted(errors.items())),
        "first_failure_s": min(bad_times) if bad_times else None,
        "last_failure_s": max(bad_times) if bad_times else None,
        "first_failure_at": time.strftime("%H:%M:%S", time.gmtime(min(bad_wall))) if bad_wall else None,
        "seconds": round(elapsed, 2),
        "rate": round(sent / elapsed, 1) if elapsed > 0 else 0.0,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
