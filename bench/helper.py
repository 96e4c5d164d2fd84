#!/usr/bin/env python3
"""Helpers for bench/run that are awkward in shell.

    helper.py freeport
    helper.py manifest DATA_DIR SUMS BASE_URL OUT_DIR MANIFEST
    helper.py health SOCKET TIMEOUT_S
    helper.py mkjobs SOCKET COUNT URL DEST_DIR TIMEOUT_S [CLIENTS]
    helper.py startup SOCKET TIMEOUT_S LOG -- FERRYD ARGS...
    helper.py report RESULTS_DIR DOC

Only the Python standard library is used. All HTTP goes to 127.0.0.1 or to a
Unix socket that bench/run created.
"""
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

MiB = 1 << 20


# --------------------------------------------------------------------------- small tools
def freeport():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def manifest(data_dir, sums, base_url, out_dir, path):
    """A version 1 manifest with every file's sha256 and size (docs/cli.md)."""
    files = []
    with open(sums) as f:
        for line in f:
            digest, name = line.split(None, 1)
            name = name.strip().lstrip("*")
            files.append({
                "url": f"{base_url}/{name}",
                "destination": os.path.join(out_dir, name),
                "sha256": digest,
                "size": os.path.getsize(os.path.join(data_dir, name)),
            })
    doc = {"version": 1, "displayName": f"bench {os.path.basename(path)}", "files": files}
    with open(path, "w") as f:
        json.dump(doc, f)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over ferryd's Unix socket; keep-alive is reused between requests."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def get_health(sock_path, timeout=2.0):
    """The health document, or None if nothing answers (yet)."""
    try:
        c = UnixHTTPConnection(sock_path, timeout=timeout)
        c.request("GET", "/v1/health")
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body) if r.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None


def health(sock_path, timeout_s):
    """Waits (bounded) until the agent answers GET /v1/health."""
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline:
        h = get_health(sock_path)
        if h is not None:
            print(json.dumps(h))
            return 0
        time.sleep(0.02)
    print(f"no answer from {sock_path} within {timeout_s} s", file=sys.stderr)
    return 1


def mkjobs(sock_path, count, url, dest_dir, timeout_s, clients="16"):
    """Creates COUNT suspended one-file jobs through POST /v1/jobs from CLIENTS clients at
    once, each on its own keep-alive connection (as a pipeline's workers would).

    Each 201 means the job is durable. Bounded by COUNT and by TIMEOUT_S; prints
    'created seconds clients'."""
    import threading
    count, clients, deadline = int(count), max(1, int(clients)), time.monotonic() + float(timeout_s)
    lock = threading.Lock()
    state = {"next": 0, "made": 0, "failed": None}

    def take():
        with lock:
            if state["failed"] or state["next"] >= count:
                return None
            i = state["next"]
            state["next"] += 1
            return i

    def client():
        c = UnixHTTPConnection(sock_path, timeout=60)
        while (i := take()) is not None:
            if time.monotonic() > deadline:
                with lock:
                    state["failed"] = f"stopped after {state['made']} jobs: {timeout_s} s elapsed"
                return
            body = json.dumps({
                "displayName": f"bench-start-{i}",
                "files": [{"url": url, "path": os.path.join(dest_dir, f"j{i:05d}"),
                           "properties": {"sha256": "0" * 64, "size": "4096"}}],
            })
            try:
                c.request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                answer = r.read()
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    state["failed"] = f"job {i}: {e}"
                return
            with lock:
                if r.status != 201:
                    state["failed"] = f"job {i}: HTTP {r.status}: {answer[:300]!r}"
                    return
                state["made"] += 1
        c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if state["failed"]:
        print(state["failed"], file=sys.stderr)
        return 1
    print(state["made"], f"{elapsed:.3f}", clients)
    return 0


def startup(sock_path, timeout_s, log, argv):
    """Starts ferryd, times start -> first 200 from GET /v1/health, then stops it.

    Prints 'seconds jobs vmhwm_kib stop_seconds'. The agent is stopped with SIGTERM
    (and SIGKILL if it has not exited 30 s later), so nothing outlives this call."""
    with open(log, "ab") as lf:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
        try:
            deadline = t0 + float(timeout_s)
            h = None
            while time.monotonic() < deadline and p.poll() is None:
                h = get_health(sock_path, timeout=float(timeout_s))
                if h is not None:
                    break
                time.sleep(0.002)
            elapsed = time.monotonic() - t0
            if h is None:
                print(f"ferryd did not answer within {timeout_s} s (exit {p.poll()})", file=sys.stderr)
                return 1
            hwm = 0
            with open(f"/proc/{p.pid}/status") as st:
                for line in st:
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
            s0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            print(f"{elapsed:.4f} {h.get('jobs')} {hwm} {time.monotonic() - s0:.3f}")
            return 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- report
def med(xs):
    return statistics.median(xs) if xs else float("nan")


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    head, rows = lines[0], lines[1:]
    return [dict(zip(head, r)) for r in rows]


def fmt_s(x):
    return "–" if x != x else (f"{x:.2f} s" if x >= 0.1 else f"{x * 1000:.0f} ms")


def fmt_mib(kib):
    return "–" if kib != kib else f"{kib / 1024:.1f} MiB"


def fmt_ratio(a, b):
    if a != a or b != b or b == 0:
        return "–"
    return f"{a / b:.2f}"


def fmt_bytes(n):
    n = int(n)
    if abs(n) >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    return f"{n / MiB:.1f} MiB" if abs(n) >= MiB else f"{n} B"


def report(res, doc):
    meta = {}
    with open(os.path.join(res, "meta.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    work, port, fbin = meta["work"], meta["port"], meta["ferry_bin"]

    def clean(cmd):
        """Commands as they can be read anywhere: no machine-specific paths."""
        cmd = re.sub(r"--ferry-bin \S+", "--ferry-bin $FERRY_BIN", cmd)
        cmd = re.sub(r"--work \S+", "--work $WORK", cmd)
        cmd = cmd.replace(fbin.rstrip("/") + "/", "")
        cmd = cmd.replace(work, "$WORK")
        cmd = cmd.replace(f"127.0.0.1:{port}", "127.0.0.1:$PORT")
        if meta.get("tls_port"):
            cmd = cmd.replace(f"127.0.0.1:{meta['tls_port']}", "127.0.0.1:$TLS_PORT")
        return cmd

    runs = read_tsv(os.path.join(res, "runs.tsv"))
    cmds = {(r["workload"], r["tool"]): r["command"] for r in read_tsv(os.path.join(res, "commands.tsv"))}
    resume = read_tsv(os.path.join(res, "resume.tsv"))
    start = read_tsv(os.path.join(res, "start.tsv"))
    mkjobs_rows = read_tsv(os.path.join(res, "mkjobs.tsv"))

    wl_info = {
        "big": (f"1 file of {fmt_bytes(meta['big_bytes'])}", 1),
        "big8": (f"1 file of {fmt_bytes(meta['big8_bytes'])} (RSS flatness check)", 1),
        "m64k": (f"{int(meta['m64k_count']):,} × 64 KiB in one job", int(meta["m64k_count"])),
        "s4k": (f"{int(meta['s4k_count']):,} × 4 KiB in one job", int(meta["s4k_count"])),
        "h2": (f"{int(meta['s4k_count']):,} × 4 KiB over HTTPS, HTTP/2", int(meta["s4k_count"])),
    }
    tool_names = {
        "curl": "curl -o (page cache only)",
        "curl_fsync": "curl -o, then fsync",
        "curl_Z16": "curl -Z --parallel-max 16",
        "aria2c_sha": "aria2c --checksum=sha-256",
        "aria2c_j16": "aria2c -j16",
        "ferry": "ferry transfer (one-shot)",
        "ferry_agent": "ferry transfer via ferryd",
    }
    # the peers each Ferry row is compared with, per workload (as in the targets)
    peers = {"big": ("curl_fsync", "aria2c_sha"), "big8": ("curl_fsync", "aria2c_sha"),
             "m64k": ("curl_Z16", "aria2c_j16"), "s4k": ("curl_Z16", "aria2c_j16"), "h2": ("curl_Z16",)}

    stats = {}
    order = []
    for r in runs:
        key = (r["workload"], r["tool"])
        if key not in stats:
            stats[key] = []
            order.append(key)
        stats[key].append(r)
    agg = {}
    for key, rs in stats.items():
        walls = [float(r["wall_s"]) for r in rs]
        cpus = [float(r["user_s"]) + float(r["sys_s"]) + float(r["agent_cpu_s"]) for r in rs]
        # in the agent mode the transfer happens in ferryd: its peak is what counts
        rss = [max(int(r["rss_kib"]), int(r["agent_hwm_kib"])) for r in rs]
        client_rss = [int(r["rss_kib"]) for r in rs]
        agg[key] = dict(n=len(rs), wall=med(walls), wmin=min(walls), wmax=max(walls), cpu=med(cpus),
                        rss=max(rss), client_rss=max(client_rss),
                        conns=med([float(r["conns"]) for r in rs]), reqs=med([float(r["reqs"]) for r in rs]))

    out = []
    w = out.append
    block = "quick" if meta["quick"] == "1" else "full"
    w(f"<!-- bench:begin {block}: written by bench/run down to bench:end {block}; a new {block} run replaces it -->")
    w(f"## Results of {meta['date']}: {'quick run (sizes ÷ 10)' if block == 'quick' else 'full sizes'}")
    w("")
    skipped = [x for x in ("big", "m64k", "s4k", "h2", "resume", "start") if x not in meta["only"].split(",")]
    if skipped:
        w(f"- **Not run this time** (`--only {meta['only']}`): {', '.join(skipped)}.")
    mode = "**quick** (sizes and counts divided by 10: a smoke run, not the reference numbers)" if meta["quick"] == "1" \
        else "full (reference sizes)"
    w(f"- Run: {mode}, {meta['rounds']} rounds; in each round every tool runs once per workload, "
      "in an order rotated from round to round. Medians over the rounds; peak RSS is the largest of the rounds.")
    w(f"- Machine: {meta['nproc']} cores, {meta['cpu_model']}, {meta['mem']} RAM, Linux {meta['kernel']}, "
      f"work directory on {meta['fstype']}.")
    w(f"- Load: before the run {meta['busy_before']} of one core was busy (1 s sample) and the load average was "
      f"{meta['load_before']}; {meta['busy_during']} busy on average during the run "
      "(the benchmark's own processes included); load average after: " + meta.get("load_after", "?") + ".")
    w(f"- Software: {meta['ferry_version']}; {meta['curl_version']}; {meta['aria2_version']}; {meta['nginx_version']}.")
    w(f"- Server: a private nginx on 127.0.0.1 (1 worker, sendfile, keep-alive; the h2 workload on a second "
      f"server of it with TLS and `http2`, a certificate of a private CA that each client is told to trust), "
      f"data in the page cache. "
      f"Page caches are not dropped between runs; each run starts with an empty, synced output directory.")
    w(f"- Every output file of every run was checked against the SHA-256 list of the generated data "
      f"({meta['verified_files']} file checks, all equal).")
    w("")
    w("### Throughput, CPU and memory")
    w("")
    w("Wall and CPU are medians over the rounds; CPU is user + system of every process the tool ran "
      "(in the agent mode: the `ferry` client plus what `ferryd` used during the run). "
      "Peak RSS is the largest over the rounds (agent mode: `ferryd`'s peak during the run, "
      "reset before each run). Ratios are Ferry ÷ peer for wall / CPU / RSS: below 1 is better for Ferry.")
    w("")
    w("| workload | tool | wall | CPU | peak RSS | files/s | conns | ÷ curl (wall / CPU / RSS) | ÷ aria2c (wall / CPU / RSS) |")
    w("|---|---|---:|---:|---:|---:|---:|---|---|")
    for key in order:
        wl, tool = key
        a = agg[key]
        label, nfiles = wl_info[wl]
        fps = f"{nfiles / a['wall']:,.0f}" if nfiles > 1 else ""
        r1 = r2 = ""
        if tool.startswith("ferry"):
            for slot, peer in enumerate(peers[wl]):
                p = agg.get((wl, peer))
                if p:
                    txt = f"{fmt_ratio(a['wall'], p['wall'])} / {fmt_ratio(a['cpu'], p['cpu'])} / {fmt_ratio(a['rss'], p['rss'])}"
                    if slot == 0:
                        r1 = txt
                    else:
                        r2 = txt
        w(f"| {label} | {tool_names.get(tool, tool)} | {fmt_s(a['wall'])} ({fmt_s(a['wmin'])}–{fmt_s(a['wmax'])}) | "
          f"{fmt_s(a['cpu'])} | {fmt_mib(a['rss'])} | {fps} | {a['conns']:.0f} | {r1} | {r2} |")
    if ("big", "ferry_agent") in agg:
        notes = [f"{wl_info[k[0]][0]}: {fmt_mib(agg[k]['client_rss'])}" for k in order if k[1] == "ferry_agent"]
        w("")
        w("The `ferry` client itself, in the agent mode, peaked at " + "; ".join(notes) + ".")
    w("")
    w("`conns` is the median number of TCP connections nginx saw per run (from its access log).")

    # ---- resume
    if resume:
        w("")
        w("### Resume after `kill -9` at about 50 %")
        w("")
        w(f"The file is served through a location with nginx `limit_rate {meta['limit_rate']}` so that the kill lands "
          "mid-way; the process doing the transfer is killed with SIGKILL once its temporary holds half the file "
          "(for the agent mode that process is `ferryd`, which is then started again). The same command runs again; "
          "nginx's access log gives the bytes it sent for that second run. *Kept* = the bytes on disk at the kill; "
          "*refetched* = bytes on the wire − (size − kept), i.e. bytes that were on disk but were fetched again.")
        w("")
        w("| tool | rounds | killed at (median) | resumed from (median) | bytes on the wire, 2nd run (median / max) | refetched (median / max) | 2nd run wall (median) | hash |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        by = {}
        for r in resume:
            by.setdefault(r["tool"], []).append(r)
        resume_names = {"curl": "curl, rerun with curl -C -", "aria2c": "aria2c, rerun with aria2c -c",
                        "ferry": tool_names["ferry"] + ", same command again",
                        "ferry_agent": tool_names["ferry_agent"] + ", ferryd killed and restarted"}
        for tool, rs in by.items():
            kept = [int(r["kept"]) for r in rs]
            fr = [int(r["range_start"]) for r in rs]
            wire = [int(r["wire"]) for r in rs]
            ref = [int(r["refetched"]) for r in rs]
            wall = [float(r["wall_s"]) for r in rs]
            w(f"| {resume_names.get(tool, tool)} | {len(rs)} | {fmt_bytes(med(kept))} | {fmt_bytes(med(fr))} | "
              f"{fmt_bytes(med(wire))} / {fmt_bytes(max(wire))} | {fmt_bytes(med(ref))} / {fmt_bytes(max(ref))} | "
              f"{fmt_s(med(wall))} | {'all ok' if all(r['sha_ok'] == 'yes' for r in rs) else 'MISMATCH'} |")

    # ---- agent start
    if start:
        w("")
        w("### Agent start with jobs in the store")
        w("")
        if mkjobs_rows:
            m = mkjobs_rows[0]
            w(f"{int(m['jobs']):,} suspended one-file jobs were created through `POST /v1/jobs` "
              f"({m.get('clients', '1')} clients at once, each on its own keep-alive connection; each 201 answer "
              f"means its job is durable) in {float(m['seconds']):.1f} s "
              f"({int(m['jobs']) / float(m['seconds']):,.0f} jobs/s); the agent was then stopped and started "
              f"again {len(start)} times, timing from the start of `ferryd` to the first 200 answer of `GET /v1/health`.")
            w("")
        w("| run | jobs reported by /v1/health | start → health | ferryd RSS at that point | stop (SIGTERM → exit) |")
        w("|---:|---:|---:|---:|---:|")
        for i, r in enumerate(start, 1):
            w(f"| {i} | {int(r['jobs']):,} | {fmt_s(float(r['seconds']))} | {fmt_mib(int(r['hwm_kib']))} | {fmt_s(float(r['stop_s']))} |")

    # ---- targets
    w("")
    w("### Targets (issue 6) and whether this run meets them")
    w("")
    w("| workload | target | measured | met? |")
    w("|---|---|---|---|")

    def yn(ok):
        return "yes" if ok else "**no**"

    def target_rows():
        g = agg.get
        for tool in ("ferry", "ferry_agent"):
            f, cf, ar = g(("big", tool)), g(("big", "curl_fsync")), g(("big", "aria2c_sha"))
            if f and cf and ar:
                r1, r2 = f["wall"] / cf["wall"], f["wall"] / ar["wall"]
                yield (f"{wl_info['big'][0]} ({tool_names[tool]})",
                       "validated + fsynced, wall ≤ 1.0× curl+fsync and ≤ 0.45× aria2c --checksum",
                       f"{fmt_s(f['wall'])}: {r1:.2f}× curl+fsync ({fmt_s(cf['wall'])}), {r2:.2f}× aria2c ({fmt_s(ar['wall'])})",
                       r1 <= 1.0 and r2 <= 0.45)
        for wl, extra in (("m64k", False), ("s4k", True)):
            for tool in ("ferry", "ferry_agent"):
                f, c = g((wl, tool)), g((wl, "curl_Z16"))
                if not (f and c):
                    continue
                n = wl_info[wl][1]
                ff, cfps = n / f["wall"], n / c["wall"]
                tgt = "files/s ≥ 1.0× curl -Z"
                meas = f"{ff:,.0f} files/s = {ff / cfps:.2f}× curl -Z ({cfps:,.0f} files/s)"
                ok = ff >= cfps
                if extra:
                    tgt += "; peak RSS ≤ 64 MiB"
                    meas += f"; peak RSS {fmt_mib(f['rss'])}"
                    ok = ok and f["rss"] <= 64 * 1024
                yield (f"{wl_info[wl][0]} ({tool_names[tool]})", tgt, meas, ok)
        if resume:
            ck = int(meta["checkpoint_bytes"])
            for tool in ("ferry", "ferry_agent"):
                rs = [r for r in resume if r["tool"] == tool]
                if rs:
                    worst = max(int(r["refetched"]) for r in rs)
                    wire = ", ".join(fmt_bytes(int(r["wire"])) for r in rs)
                    yield (f"resume after kill -9 at ~50 % of {fmt_bytes(meta['big_bytes'])} ({tool_names[tool]})",
                           f"refetched ≤ one checkpoint interval ({fmt_bytes(ck)}); bytes on the wire reported",
                           f"refetched at most {fmt_bytes(worst)}; on the wire: {wire}", worst <= ck)
        if start:
            secs = [float(r["seconds"]) for r in start]
            jobs = [int(r["jobs"]) for r in start]
            yield (f"agent start with {min(jobs):,} jobs in the store", "serving the API in < 1 s",
                   f"median {fmt_s(med(secs))}, worst {fmt_s(max(secs))}", max(secs) < 1.0)
        for tool in ("ferry", "ferry_agent"):
            f, f8 = g(("big", tool)), g(("big8", tool))
            if f:
                meas = f"{fmt_mib(f['rss'])}"
                ok = f["rss"] <= 32 * 1024
                if f8:
                    meas += f" ({fmt_mib(f8['rss'])} for the {fmt_bytes(meta['big8_bytes'])} file)"
                    ok = ok and f["rss"] - f8["rss"] <= 2048
                others = ", ".join(f"{tool_names[t].split(' ')[0]} {fmt_mib(g(('big', t))['rss'])}"
                                   for t in ("curl_fsync", "aria2c_sha") if g(("big", t)))
                yield (f"peak RSS during the {fmt_bytes(meta['big_bytes'])} transfer ({tool_names[tool]})",
                       "≤ 32 MiB, flat in file size (within 2 MiB of the 1/8-size file)",
                       meas + (f"; peers: {others}" if others else ""), ok)

    for row in target_rows():
        w(f"| {row[0]} | {row[1]} | {row[2]} | {yn(row[3])} |")

    # ---- commands
    w("")
    w("### Exact commands")
    w("")
    w("`$WORK` is the work directory (default `${TMPDIR:-/tmp}/ferry-bench`), `$PORT` the free port the private "
      "nginx listened on; `ferry` and `ferryd` are the release binaries. "
      "Before every run: `rm -rf $WORK/out && mkdir -p $WORK/out && sync`. Each command ran under "
      "`/usr/bin/time -f '%e %U %S %M'`.")
    w("")
    w("```sh")
    w(clean(meta.get("bench_cmd", "bench/run")))
    for key in order:
        if key in cmds:
            w(f"# {key[0]} / {key[1]}")
            w(clean(cmds[key]))
    for k in sorted(k for k in cmds if k[0] in ("resume", "start", "agent")):
        w(f"# {k[0]} / {k[1]}")
        w(clean(cmds[k]))
    w("```")
    w(f"<!-- bench:end {block} -->")
    text = "\n".join(out) + "\n"

    # Replace this kind of run's block (full or quick) and keep everything else in the
    # document: the text written by people and the other kind's block.
    head = "# Performance\n\nMeasured with `bench/run`.\n\n"
    tail = ""
    if os.path.exists(doc):
        old = open(doc).read()
        m = re.search(rf"<!-- bench:begin {block}\b.*?<!-- bench:end {block} -->\n?", old, re.S)
        if m:
            head, tail = old[:m.start()], old[m.end():]
        else:
            head = old.rstrip("\n") + "\n\n"
    with open(doc, "w") as f:
        f.write(head + text + tail)
    sys.stdout.write(text)


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "freeport":
        return freeport()
    if cmd == "manifest":
        return manifest(*args)
    if cmd == "health":
        return health(*args)
    if cmd == "mkjobs":
        return mkjobs(*args)
    if cmd == "startup":
        sep = args.index("--")
        return startup(*args[:sep], args[sep + 1:])
    if cmd == "report":
        return report(*args)
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
