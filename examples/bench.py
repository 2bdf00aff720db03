#!/usr/bin/env python3
"""Benchmark of pwdrift against the Graph sandbox (not a test): every scenario of docs/performance.md in one
invocation, one table at the end. Run it through examples/bench.sh (which builds the release
binary first):

    bash examples/bench.sh                   # quick: quota scenarios under --throttle scaled:10
    bash examples/bench.sh --quota real      # the quota scenarios under the real quotas (~11 min)
    bash examples/bench.sh --scales 10000,100000,300000,1000000
    python3 examples/bench.py --only resets --reset-methods api --quota real   # resetPassword pace
    python3 examples/bench.py --only apps                                      # 20 tenants, app quota

Columns: scenario, users in the tenant(s), declared users, changes (planned or applied), HTTP
requests the sandbox saw (token requests excluded; a $batch counts as its envelope plus one per
member), 429s the sandbox answered, wall time, the floor (what the latency or quota model makes impossible to
beat, see `floor_*` below) and the ratio wall/floor, peak RSS of the pwdrift process
(/usr/bin/time -v). The sandbox runs as its own process; its memory is not counted.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import http.client
import urllib.request
from urllib.parse import urlparse, quote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PWDRIFT_BENCH_BIN: another build to measure (a copy of an earlier one for before/after, or
# target/debug/pwdrift for a quick check of a scenario)
BIN = os.environ.get("PWDRIFT_BENCH_BIN") or os.path.join(ROOT, "target", "release", "pwdrift")
# PWDRIFT_BENCH_SANDBOX_BIN: the build whose sandbox serves (default: BIN), so that an earlier
# client can be measured against today's sandbox
SANDBOX_BIN = os.environ.get("PWDRIFT_BENCH_SANDBOX_BIN") or BIN
TIME = "/usr/bin/time"

BASE_MS = 60.0  # per request (assumption, see crates/graph-sandbox/src/faults.rs)
ITEM_MS = 0.4  # per returned object
PAGE = 999
READ_CONCURRENCY = 16  # graph/client/partition.rs
PAGE_MS = BASE_MS + ITEM_MS * PAGE


class Sandbox:
    def __init__(self, args, work):
        self.work = work
        log = open(os.path.join(work, "sandbox.log"), "w")
        self.proc = subprocess.Popen(
            [SANDBOX_BIN, "sandbox", "--listen", "127.0.0.1:0"] + args,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("sandbox did not start: see " + log.name)
        self.info = json.loads(line)
        self.url = self.info["graph_url"]

    def call(self, method, path):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
        return json.loads(body) if body else None

    def state(self):
        return self.call("GET", "/_sandbox/state")

    def reset_stats(self):
        self.call("POST", "/_sandbox/reset-stats")

    def stats(self):
        s = self.call("GET", "/_sandbox/stats")
        by_scope = s.get("throttleModel", {}).get("throttled_by_scope") or {}
        if by_scope:
            sys.stderr.write("  429s by scope: %s\n" % json.dumps(by_scope))
        return s["total"], s["throttled"]

    def env(self):
        e = dict(os.environ)
        e.update(
            AZURE_CLIENT_ID=self.info["client_id"],
            AZURE_CLIENT_SECRET=self.info["client_secret"],
            AZURE_TENANT_ID=self.info["tenant_id"],
            PWDRIFT_GRAPH_URL=self.url,
            AZURE_AUTHORITY_HOST=self.info["authority_host"],
            NO_COLOR="1",
        )
        return e

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_desired(state, directory, declared_per_tenant):
    """requirePasswordChange since 2026-11-22 for the first N non-admin users of each tenant
    (files of at most 20,000 users: a desired-state file may be at most 10 MiB)."""
    os.makedirs(directory, exist_ok=True)
    total = 0
    for ti, t in enumerate(state["tenants"]):
        users = [u for u in t["users"] if not u.get("directoryRoles")][:declared_per_tenant]
        total += len(users)
        write_users(directory, ti, t["initialDomain"], [u["userPrincipalName"] for u in users])
    return total


def write_users(directory, ti, tenant, upns):
    """Desired-state files of tenant number `ti`: requirePasswordChange since 2026-11-22 for
    `upns`, 20,000 users a file."""
    for n, i in enumerate(range(0, len(upns), 20000)):
        with open(os.path.join(directory, "t%03d-part%03d.yaml" % (ti, n)), "w") as f:
            f.write("version: 1\ntenant: %s\nusers:\n" % tenant)
            for upn in upns[i : i + 20000]:
                f.write(
                    "  - user: %s\n    requirePasswordChange: { since: 2026-11-22T00:00:00Z }\n"
                    % upn
                )


LAST_CPU = [0.0]  # user + system CPU seconds of the last `timed` command


def timed(cmd, env, stdout_file=None):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, peak RSS MB, stdout, stderr).
    With `stdout_file`, stdout goes to that file (as `pwdrift plan > plan.txt` in CI) and ""
    is returned for it: a plan of 1,000,000 users prints about 600 MB, and reading that into
    this process while the plan runs would take the machine's two cores from pwdrift and the
    sandbox (runs of the same plan then varied by a third)."""
    t0 = time.monotonic()
    if stdout_file is None:
        p = subprocess.run([TIME, "-v"] + cmd, env=env, capture_output=True, text=True)
    else:
        with open(stdout_file, "w") as f:
            p = subprocess.run([TIME, "-v"] + cmd, env=env, stdout=f, stderr=subprocess.PIPE,
                               text=True)
        p.stdout = ""
    wall = time.monotonic() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    cpu = [re.search(r"%s time \(seconds\): ([\d.]+)" % k, p.stderr) for k in ("User", "System")]
    LAST_CPU[0] = sum(float(c.group(1)) for c in cpu if c)
    if p.returncode not in (0, 2):
        sys.stderr.write(p.stdout[-2000:] + p.stderr[-4000:])
        raise SystemExit("failed: " + " ".join(cmd))
    return wall, rss, p.stdout, p.stderr


def changes_in(plan_file):
    with open(plan_file) as f:
        plan = json.load(f)
    n = 0
    for t in plan["tenants"]:
        for u in t["users"]:
            if u["action"]["type"] in ("set_flags", "reset_password"):
                n += 1
    return n


ROWS = []


def row(scenario, users, declared, changes, requests, throttled, wall, floor, rss, note=""):
    ROWS.append(
        dict(
            scenario=scenario,
            users=users,
            declared=declared,
            changes=changes,
            requests=requests,
            throttled=throttled,
            wall=wall,
            floor=floor,
            rss=rss,
            note=note,
        )
    )
    print(
        "  %-34s %9s users %9s declared  %6.1f s  floor %6.1f s  %s MB  %s"
        % (scenario, users, declared, wall, floor or 0, "%.0f" % rss if rss == rss else "-", note),
        file=sys.stderr,
        flush=True,
    )


def plan_run(sb, work, desired, extra_env=None, out_name="plan.json"):
    env = sb.env()
    env.update(extra_env or {})
    out = os.path.join(work, out_name)
    sb.reset_stats()
    wall, rss, _, err = timed([BIN, "-v", "plan", desired, "--out", out], env,
                              stdout_file=os.path.join(work, out_name + ".txt"))
    requests, throttled = sb.stats()
    return wall, rss, requests, throttled, changes_in(out), err


def floor_partitioned(users):
    pages = math.ceil(users / PAGE)
    return math.ceil(pages / READ_CONCURRENCY) * PAGE_MS / 1000


def floor_sequential(users):
    return math.ceil(users / PAGE) * PAGE_MS / 1000


def scenario_large_plan(work, users):
    """100,000 declared users at 60 ms + 0.4 ms/object: partitioned vs sequential paging, and
    the per-user reads other tools make (a sample, sequential GET /users/{upn})."""
    sb = Sandbox(
        ["--generate", str(users), "--rng-seed", "42", "--throttle", "real",
         "--latency", "%d" % BASE_MS, "--latency-per-item", str(ITEM_MS)],
        work,
    )
    try:
        state = sb.state()
        desired = os.path.join(work, "desired")
        declared = write_desired(state, desired, users)
        n = len(state["tenants"][0]["users"])
        wall, rss, req, thr, ch, err = plan_run(sb, work, desired)
        path = "partitioned" if "parallel partitions" in err else "SEQUENTIAL (fell back)"
        row("plan, partitioned read", n, declared, ch, req, thr, wall, floor_partitioned(n), rss, path)
        # the same tenant selected by `selectors: [{ all: true }]` instead of 100,000 entries:
        # the same listing, so the same time and memory (issue: selectors)
        every = os.path.join(work, "desired-all")
        os.makedirs(every)
        with open(os.path.join(every, "all.yaml"), "w") as f:
            f.write("version: 1\ntenant: %s\nselectors:\n  - all: true\n"
                    "    requirePasswordChange: { since: 2026-11-22T00:00:00Z }\n"
                    % state["tenants"][0]["initialDomain"])
        wall, rss, req, thr, ch, err = plan_run(sb, work, every, None, "plan-all.json")
        path = "partitioned" if "parallel partitions" in err else "SEQUENTIAL (fell back)"
        row("plan, `all: true` selector", n, 1, ch, req, thr, wall, floor_partitioned(n), rss, path)
        wall, rss, req, thr, ch, _ = plan_run(
            sb, work, desired, {"PWDRIFT_PARTITION_MIN_USERS": str(10**9)}, "plan-seq.json")
        row("plan, sequential paging", n, declared, ch, req, thr, wall, floor_sequential(n), rss)
        # per-user reads: GET /users/{upn} one after the other, on one kept-alive connection
        sample = 300
        upns = [u["userPrincipalName"] for u in state["tenants"][0]["users"]][:sample]
        token = app_token(sb)
        u = urlparse(sb.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        sb.reset_stats()
        t0 = time.monotonic()
        for upn in upns:
            conn.request("GET", "/v1.0/users/%s?$select=id,userPrincipalName,passwordProfile" % quote(upn),
                         headers={"Authorization": "Bearer " + token})
            conn.getresponse().read()
        wall = time.monotonic() - t0
        req, thr = sb.stats()
        per = wall / sample
        est = per * declared
        row("per-user reads (baseline, sample)", n, sample, "-", req, thr, wall,
            sample * (BASE_MS + ITEM_MS) / 1000, float("nan"),
            "extrapolated to %d users: %.0f s" % (declared, est))
    finally:
        sb.stop()


def app_token(sb):
    host = sb.info["authority_host"].rstrip("/")
    data = ("grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s" % (
        quote(sb.info["client_id"]), quote(sb.info["client_secret"]),
        quote("https://graph.microsoft.com/.default"))).encode()
    req = urllib.request.Request("%s/%s/oauth2/v2.0/token" % (host, sb.info["tenant_id"]), data=data)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["access_token"]


BASELINE_USERS = 100  # the tiny tenant whose plan measures the fixed cost (binary, TLS, runtime)


def scenario_scaling(work, scales, repeat):
    """Time and memory of a plan of N declared users of N, N in `scales`, no latency (pwdrift's
    own cost; the floor is then 0 and not shown). First a plan of a tiny tenant (BASELINE_USERS,
    listed like the large ones) measures the fixed cost; per-user cost is then
    (peak RSS - baseline RSS) / declared users and (wall - baseline wall) / declared users, and the
    raw totals are in the wall and peak RSS columns. CPU is pwdrift's user + system time: the
    wall time also waits on the sandbox, which shares the machine's cores. Each size is planned
    `repeat` times; the row is the median run."""
    base = None
    for n in [BASELINE_USERS] + scales:
        d = os.path.join(work, "scale-%d" % n)
        os.makedirs(d)
        sb = Sandbox(["--generate", str(n), "--rng-seed", "7", "--throttle", "off"], d)
        try:
            state = sb.state()
            desired = os.path.join(d, "desired")
            declared = write_desired(state, desired, n)
            total = len(state["tenants"][0]["users"])
            del state
            # the baseline takes the listing path of the large plans (not $batch)
            extra = {"PWDRIFT_LIST_ALL_THRESHOLD": "0"} if base is None else None
            # the median of `repeat` runs (by wall time): one run on a shared VM varies by
            # up to 20%
            runs = []
            for _ in range(repeat):
                wall, rss, req, thr, ch, err = plan_run(sb, d, desired, extra)
                runs.append((wall, LAST_CPU[0], rss, req, thr, ch))
            runs.sort()
            wall, cpu, rss, req, thr, ch = runs[len(runs) // 2]
            if base is None:
                base = (wall, rss, cpu)
                row("scaling: baseline (tiny tenant)", total, declared, ch, req, thr, wall, None,
                    rss, "fixed cost, subtracted below (CPU %.2f s)" % cpu)
                continue
            row("scaling: plan, no latency", total, declared, ch, req, thr, wall, None, rss,
                "per user above baseline: %.1f us wall, %.1f us CPU, %.2f KB (raw %.2f KB)" % (
                    (wall - base[0]) / declared * 1e6, (cpu - base[2]) / declared * 1e6,
                    (rss - base[1]) * 1024 / declared, rss * 1024 / declared))
        finally:
            sb.stop()
            shutil.rmtree(d, ignore_errors=True)


def scenario_quota(work, changes_wanted, quota):
    """An apply of ~N changes under the write quota: real (3,000 writes / 150 s per app and
    tenant) or scaled:K (same rate, windows and quotas / K)."""
    k = 1 if quota == "real" else int(quota.split(":")[1])
    users = changes_wanted + changes_wanted // 20 + 400  # synced users are blocked (no delegated sign-in)
    d = os.path.join(work, "quota-%d" % changes_wanted)
    os.makedirs(d)
    throttle = "real" if k == 1 else "scaled:%d" % k
    sb = Sandbox(["--generate", str(users), "--rng-seed", "11", "--throttle", throttle,
                  "--latency", "20"], d)
    try:
        state = sb.state()
        desired = os.path.join(d, "desired")
        # declare users until the plan has the changes wanted (synced users are blocked)
        declared = write_desired(state, desired, users)
        env = sb.env()
        env["PWDRIFT_WRITE_QUOTA_SCALE"] = str(k)
        plan = os.path.join(d, "plan.json")
        timed([BIN, "plan", desired, "--out", plan] + SYNCED, env)
        ch = changes_in(plan)
        if ch > changes_wanted:
            declared = keep_changes(plan, desired, changes_wanted)
            timed([BIN, "plan", desired, "--out", plan] + SYNCED, env)
            ch = changes_in(plan)
        sb.reset_stats()
        wall, rss, out, _ = timed([BIN, "apply", plan, "--auto-approve", "--force", "--concurrency", "8"] + SYNCED, env)
        req, thr = sb.stats()
        span = write_span(sb)
        quota_writes, window = math.ceil(3000 / k), 150.0 / k
        floor = ((ch - 1) // quota_writes) * window
        row("apply under the write quota (%s)" % throttle, users + 1, declared, ch, req, thr, wall,
            floor, rss, "429s: %.2f%% of writes; %s" % (100.0 * thr / max(ch, 1), span_note(span, floor)))
    finally:
        sb.stop()
        shutil.rmtree(d, ignore_errors=True)


RESET_MS = 200.0  # per answer in the resets scenario (docs/performance.md)
RESET_RETRY_AFTER_S = 1.0  # the sandbox's --reset-retry-after default: a 202's Retry-After
# generated tenants hold synced users, whose flag changes are planned as blocked unless the tenant
# is declared to accept them (the sandbox does by default): the scenarios measure the writes
SYNCED = ["--synced-flags-writable"]
RESET_CONCURRENCY = 32  # --concurrency of that apply: requests in flight per tenant (16 would give
# 80 writes/s at 200 ms: the 500 writes past the first window alone take 6 s, about 1.07x)


AUTH_METHOD_QUOTA = (5, 10.0)  # resetPassword + operation polls per app and tenant (graph/quota.rs)


def scenario_resets(work, n, quota, method):
    """N password resets under the write quota at 200 ms per answer (docs/performance.md):
    `patch`: passwords pwdrift generates, set by PATCH (cloud users); `api`: system-generated
    passwords through resetPassword (delegated sign-in; each operation polled to its end).
    Resets run concurrently (--concurrency 32 requests in flight, 4 resets in progress per
    request slot), paced to the quota. Floor: the quota minimum (the writes past one window's
    quota wait for the window), plus one answer for the last write, plus the verification
    read-back ($batch of 20 reads, 32 in flight, one answer each); for `api` also the last
    operation's confirmation: the `Retry-After` of its 202 (the sandbox's default, 1 s), which
    must pass before it is polled, and one poll answer. `api` is bound by the authentication-method
    limit instead (5 requests per 10 s per app and tenant, scaled like the quotas): a reset and
    its poll are two requests, so the floor is when the last of 2N requests may start, plus its
    answer and the verification."""
    k = 1 if quota == "real" else int(quota.split(":")[1])
    d = os.path.join(work, "resets-%s-%d" % (method, n))
    os.makedirs(d)
    throttle = "real" if k == 1 else "scaled:%d" % k
    users = n * 3 // 2 + 400
    sb = Sandbox(["--generate", str(users), "--rng-seed", "13", "--throttle", throttle,
                  "--latency", "%d" % RESET_MS], d)
    try:
        state = sb.state()
        t = state["tenants"][0]
        plain = [u["userPrincipalName"] for u in t["users"]
                 if not u.get("onPremisesSyncEnabled") and not u.get("privileged")
                 and u.get("userType") == "Member" and not u.get("federatedDomain")][:n]
        if len(plain) < n:
            raise SystemExit("resets: only %d plain cloud users in the generated tenant" % len(plain))
        source = "{ generate: { length: 16 } }" if method == "patch" else "{ systemGenerated: true }"
        desired = os.path.join(d, "desired")
        os.makedirs(desired)
        with open(os.path.join(desired, "resets.yaml"), "w") as f:
            f.write("version: 1\ntenant: %s\nusers:\n" % t["initialDomain"])
            for upn in plain:
                f.write("  - user: %s\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n"
                        "      password: %s\n" % (upn, source))
        env = sb.env()
        env["PWDRIFT_WRITE_QUOTA_SCALE"] = str(k)
        extra = []
        if method == "api":
            env.update(
                AZURE_USERNAME=sb.info["delegated_username"],
                AZURE_PASSWORD=sb.info["delegated_password"],
                PWDRIFT_DELEGATED_CLIENT_ID=sb.info["delegated_client_id"],
            )
            extra = ["--delegated"]
        plan = os.path.join(d, "plan.json")
        timed([BIN, "plan", desired, "--out", plan] + extra + SYNCED, env)
        ch = changes_in(plan)
        sb.reset_stats()
        wall, rss, out, _ = timed(
            [BIN, "apply", plan, "--auto-approve", "--force", "--concurrency", str(RESET_CONCURRENCY)] + SYNCED + [
             "--secrets-out", os.path.join(d, "secrets.jsonl")] + extra, env)
        req, thr = sb.stats()
        span = write_span(sb)
        s = sb.call("GET", "/_sandbox/stats")
        peak = max([v for r, v in s.get("peakInFlightByRoute", {}).items()
                    if r.startswith("PATCH ") or "resetPassword" in r] or [0])
        quota_writes, window = math.ceil(3000 / k), 150.0 / k
        verify = math.ceil(math.ceil(ch / 20) / RESET_CONCURRENCY) * RESET_MS / 1000
        floor = ((ch - 1) // quota_writes) * window + RESET_MS / 1000 + verify
        writes_floor = ((ch - 1) // quota_writes) * window
        if method == "api":
            floor += RESET_RETRY_AFTER_S + RESET_MS / 1000
            per, secs = math.ceil(AUTH_METHOD_QUOTA[0] / k), AUTH_METHOD_QUOTA[1] / k
            floor = max(floor, ((2 * ch - 1) // per) * secs + RESET_MS / 1000 + verify)
            writes_floor = max(writes_floor, ((2 * ch - 2) // per) * secs)
        m = re.search(r"(\d+) changed and verified", out)
        row("resets (%s) under the write quota (%s)" % (method, throttle), users + 1, len(plain), ch,
            req, thr, wall, floor, rss,
            "%s verified; peak %d resets in flight; 429s: %.2f%% of writes; %s"
            % (m.group(1) if m else "?", peak, 100.0 * thr / max(ch, 1),
               span_note(span, writes_floor)))
    finally:
        sb.stop()
        shutil.rmtree(d, ignore_errors=True)


def write_span(sb):
    """Seconds from the first to the last write the sandbox answered 2xx since its stats were
    reset (None when it saw no write)."""
    s = sb.call("GET", "/_sandbox/stats")
    first, last = s.get("firstWriteMs"), s.get("lastWriteMs")
    return None if first is None or last is None else (last - first) / 1000.0


def span_note(span, floor):
    """The writes' own span against the quota floor (the apply's reads before the first write
    and its verification after the last are outside it)."""
    if span is None:
        return "no write answered"
    return "writes from first to last: %.1f s (%.2fx the floor)" % (span, span / floor if floor else 0)


def keep_changes(plan_file, directory, keep):
    """Rewrites the desired state in `directory` to declare only the first `keep` users the plan
    changes (a saved plan cannot be trimmed: apply re-checks it against desired state)."""
    with open(plan_file) as f:
        plan = json.load(f)
    shutil.rmtree(directory)
    os.makedirs(directory)
    n = 0
    for ti, t in enumerate(plan["tenants"]):
        upns = []
        for u in t["users"]:
            if u["action"]["type"] in ("set_flags", "reset_password") and n < keep:
                upns.append(u["user_principal_name"])
                n += 1
        write_users(directory, ti, t["tenant"], upns)
    return n


def scenario_tenants(work, tenants, users):
    """K tenants of N users, all declared, planned in one run, against one such tenant alone."""
    times = {}
    for k in (1, tenants):
        d = os.path.join(work, "tenants-%d" % k)
        os.makedirs(d)
        sb = Sandbox(["--generate", str(users), "--generate-tenants", str(k), "--rng-seed", "5",
                      "--throttle", "real", "--latency", "%d" % BASE_MS,
                      "--latency-per-item", str(ITEM_MS)], d)
        try:
            state = sb.state()
            desired = os.path.join(d, "desired")
            declared = write_desired(state, desired, users)
            total = sum(len(t["users"]) for t in state["tenants"])
            wall, rss, req, thr, ch, _ = plan_run(sb, d, desired)
            times[k] = wall
            floor = times[1] if k != 1 else wall
            row("plan of %d tenant(s) of %d users" % (k, users), total, declared, ch, req, thr,
                wall, floor, rss, "floor: one tenant alone" if k != 1 else "")
        finally:
            sb.stop()
            shutil.rmtree(d, ignore_errors=True)


APP_WRITES = (70000, 300.0)  # the application's writes across tenants (graph/quota.rs)
TENANT_WRITES = (3000, 150.0)  # writes per app and tenant


def scenario_apps(work, tenants, writes_per_tenant, scale):
    """`tenants` tenants applied at once from one process, `writes_per_tenant` flag changes each,
    under the sandbox's `--throttle scaled:K` (every window and quota / K, the rates unchanged):
    together they exceed the application's write quota across tenants (70,000 per 5 min, K=20:
    3,500 per 15 s) while each tenant stays within its own (3,000 per 150 s, K=20: 150 per
    7.5 s). Floor: when the last write may start under the application's quota (or the tenant's,
    if that is later)."""
    k = scale
    d = os.path.join(work, "apps-%d" % tenants)
    os.makedirs(d)
    users = writes_per_tenant * 3 // 2 + 100
    sb = Sandbox(["--generate", str(users), "--generate-tenants", str(tenants), "--rng-seed", "17",
                  "--throttle", "scaled:%d" % k, "--latency", "20"], d)
    try:
        state = sb.state()
        desired = os.path.join(d, "desired")
        env = sb.env()
        env["PWDRIFT_WRITE_QUOTA_SCALE"] = str(k)
        declared = write_desired(state, desired, writes_per_tenant)
        plan = os.path.join(d, "plan.json")
        timed([BIN, "plan", desired, "--out", plan] + SYNCED, env)
        with open(plan) as f:
            per_tenant = [sum(1 for u in t["users"] if u["action"]["type"] == "set_flags")
                          for t in json.load(f)["tenants"]]
        ch = sum(per_tenant)
        sb.reset_stats()
        wall, rss, out, _ = timed([BIN, "apply", plan, "--auto-approve", "--force", "--concurrency", "8"] + SYNCED,
                                  env)
        req, thr = sb.stats()
        span = write_span(sb)
        app_n, app_w = math.ceil(APP_WRITES[0] / k), APP_WRITES[1] / k
        t_n, t_w = math.ceil(TENANT_WRITES[0] / k), TENANT_WRITES[1] / k
        floor = max(((ch - 1) // app_n) * app_w, ((max(per_tenant) - 1) // t_n) * t_w)
        row("%d tenants at once, app write quota (scaled:%d)" % (tenants, k),
            sum(len(t["users"]) for t in state["tenants"]), declared, ch, req, thr, wall, floor, rss,
            "app quota %d writes / %.0f s; per tenant %d / %.1f s; 429s: %.2f%% of writes; %s"
            % (app_n, app_w, t_n, t_w, 100.0 * thr / max(ch, 1), span_note(span, floor)))
    finally:
        sb.stop()
        shutil.rmtree(d, ignore_errors=True)


def print_table():
    print("| scenario | users | declared | changes | HTTP requests | 429s | wall | floor | ratio | peak RSS | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in ROWS:
        floor = "%.1f s" % r["floor"] if r["floor"] else "-"
        ratio = "%.2fx" % (r["wall"] / r["floor"]) if r["floor"] else "-"
        rss = "%.0f MB" % r["rss"] if r["rss"] == r["rss"] else "-"
        print("| %s | %s | %s | %s | %s | %s | %.1f s | %s | %s | %s | %s |" % (
            r["scenario"], fmt(r["users"]), fmt(r["declared"]), fmt(r["changes"]),
            fmt(r["requests"]), fmt(r["throttled"]), r["wall"], floor, ratio, rss, r["note"]))


def fmt(v):
    return "{:,}".format(v) if isinstance(v, int) else str(v)


def scenario_upn_ranges(work, users):
    """The partitioned read when Graph honours the userPrincipalName range filter, refuses it
    (400) or accepts and ignores it (--upn-range-filter): the plan must be the same, and the
    cost of finding out bounded (at most about the sequential read again)."""
    plans = {}
    for mode in ("honoured", "rejected", "ignored"):
        sb = Sandbox(
            ["--generate", str(users), "--rng-seed", "42", "--throttle", "real",
             "--latency", "%d" % BASE_MS, "--latency-per-item", str(ITEM_MS),
             "--upn-range-filter", mode],
            work,
        )
        try:
            state = sb.state()
            desired = os.path.join(work, "desired-ranges")
            shutil.rmtree(desired, ignore_errors=True)
            declared = write_desired(state, desired, users)
            n = len(state["tenants"][0]["users"])
            if mode == "honoured":
                wall, rss, req, thr, ch, _ = plan_run(
                    sb, work, desired, {"PWDRIFT_PARTITION_MIN_USERS": str(10**9)},
                    "plan-ranges-seq.json")
                row("ranges: sequential paging", n, declared, ch, req, thr, wall,
                    floor_sequential(n), rss)
            out = "plan-ranges-%s.json" % mode
            wall, rss, req, thr, ch, err = plan_run(sb, work, desired, None, out)
            if "parallel partitions" in err:
                path = "partitioned"
            elif "Graph ignored the userPrincipalName range filter" in err:
                path = "stray user seen: sequential"
            else:
                path = "refused: sequential"
            row("ranges: filter %s" % mode, n, declared, ch, req, thr, wall,
                floor_partitioned(n) if mode == "honoured" else floor_sequential(n), rss, path)
            with open(os.path.join(work, out)) as f:
                plan = json.load(f)
            plans[mode] = [(u["user_id"], u["action"]) for t in plan["tenants"] for u in t["users"]]
        finally:
            sb.stop()
    same = plans["honoured"] == plans["rejected"] == plans["ignored"]
    print("  ranges: the three plans are %s" % ("identical" if same else "DIFFERENT"),
          file=sys.stderr, flush=True)
    if not same:
        raise SystemExit("the plan depends on how Graph treats the range filter")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100000, help="large-plan scenario size")
    ap.add_argument("--scales", default="10000,100000,300000,1000000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size in the scaling scenario (median)")
    ap.add_argument("--quota", default="scaled:10", help="real or scaled:K")
    ap.add_argument("--quota-changes", default="3500,10000")
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--tenant-users", type=int, default=2000)
    ap.add_argument("--resets", default="3500", help="resets scenario sizes (docs/performance.md)")
    ap.add_argument("--reset-methods", default="patch,api",
                    help="patch (generated passwords by PATCH), api (system-generated by resetPassword)")
    ap.add_argument("--range-users", type=int, default=100000,
                    help="size of the ranges scenario (--upn-range-filter honoured/rejected/ignored)")
    ap.add_argument("--api-resets", default="36",
                    help="sizes of the resetPassword resets (paced to 5 per 10 s per tenant)")
    ap.add_argument("--app-tenants", type=int, default=20, help="apps scenario: tenants at once")
    ap.add_argument("--app-writes", type=int, default=300, help="apps scenario: writes per tenant")
    ap.add_argument("--app-scale", type=int, default=20, help="apps scenario: the sandbox's scaled:K")
    ap.add_argument("--only", default="plan,scaling,quota,tenants,resets,ranges,apps")
    a = ap.parse_args()
    only = set(a.only.split(","))
    work = tempfile.mkdtemp(prefix="pwdrift-bench-")
    try:
        if "plan" in only:
            scenario_large_plan(work, a.users)
        if "ranges" in only:
            scenario_upn_ranges(work, a.range_users)
        if "tenants" in only:
            scenario_tenants(work, a.tenants, a.tenant_users)
        if "scaling" in only:
            scenario_scaling(work, [int(x) for x in a.scales.split(",") if x], a.repeat)
        if "quota" in only:
            for n in [int(x) for x in a.quota_changes.split(",") if x]:
                scenario_quota(work, n, a.quota)
        if "resets" in only:
            methods = [m for m in a.reset_methods.split(",") if m]
            if "patch" in methods:
                for n in [int(x) for x in a.resets.split(",") if x]:
                    scenario_resets(work, n, a.quota, "patch")
            if "api" in methods:
                for n in [int(x) for x in a.api_resets.split(",") if x]:
                    scenario_resets(work, n, a.quota, "api")
        if "apps" in only:
            scenario_apps(work, a.app_tenants, a.app_writes, a.app_scale)
    finally:
        print_table()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
