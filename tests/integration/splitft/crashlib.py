#!/usr/bin/env python3
"""Crash tests of SplitFT with the real applications, on the volatilefs crash fixture.

Each scenario: start three ncl-server peers and a volatilefs mount, run the application
(under scripts/splitft-run or plainly), make writes and record which ones the application
acknowledged, "crash" the machine (SIGKILL the application, SIGUSR1 to volatilefs: every
unsynced byte is gone), restart the application (under the shim: recovery runs first), and
check that every acknowledged write is there and the application's own checker is clean.

  crashlib.py sqlite-wal|sqlite-delete|redis|rocksdb MODE
MODE: splitft (nothing may be lost), weak (the negative control: something acknowledged
must be lost, or the fixture crashed nothing), peers (one peer killed mid-run, another
restarted empty), nopeers (no peer reachable: every sync real, nothing lost), flusher
(redis only: the peers' memory drops to near zero once the flusher has run).
Exit 0 on success, 1 with a message on failure, 77 to skip. CRASH_BACKING_ROOT puts the
files volatilefs keeps under that directory (the GlusterFS mount of scripts/dfs).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
BUILD = os.environ.get("BUILD", "build")
BUILD = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
BIN = os.path.join(BUILD, "bin")


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def skip(msg):
    print("skipped:", msg, flush=True)
    sys.exit(77)


def note(msg):
    print("--", msg, flush=True)


class Env:
    """Peers, the volatilefs mount and the application's environment for one scenario."""

    def __init__(self, mode, app):
        self.mode = mode
        self.tmp = tempfile.mkdtemp(prefix="crash.")
        # CRASH_BACKING_ROOT: where volatilefs keeps the files (default: the scenario's own
        # temporary directory); a GlusterFS mount puts the application on the DFS, with
        # volatilefs still forgetting every unsynced byte at the crash.
        root = os.environ.get("CRASH_BACKING_ROOT")
        self.backing = (tempfile.mkdtemp(prefix=f"crash-{app}-", dir=root) if root
                        else os.path.join(self.tmp, "backing"))
        self.mnt = os.path.join(self.tmp, "mnt")
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mnt)
        self.procs = []
        self.id = f"crash-{app}-{os.getpid()}"
        self.base_port = 20000 + (os.getpid() % 1200) * 10
        self.ncl_env = dict(os.environ, NCL_RUN_DIR=os.path.join(self.tmp, "ncl"),
                            NCL_BASE_PORT=str(self.base_port), NCL_CAPACITY="256M", BUILD=BUILD)
        self.vfs = None
        self.vfs_log = os.path.join(self.tmp, "volatilefs.log")
        self.runs = 0
        self.replayed = 0  # records recovery put back into the files (from splitft-run)

    # -- peers -------------------------------------------------------------------------
    def peers(self, *args):
        r = subprocess.run([os.path.join(ROOT, "scripts/ncl-peers"), *args], env=self.ncl_env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"ncl-peers {' '.join(args)}: {r.stderr}")
        return r.stdout

    def peer_list(self):
        if self.mode == "nopeers":  # closed ports: nothing answers
            return "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
        return ",".join(f"127.0.0.1:{self.base_port + i}" for i in range(3))

    # -- the crash fixture ------------------------------------------------------------------
    def mount(self):
        if not os.path.exists("/dev/fuse"):
            skip("no /dev/fuse")
        exe = os.path.join(BIN, "volatilefs")
        if not os.path.exists(exe):
            fail(f"{exe} is not built")
        self.vfs = subprocess.Popen([exe, "--backing", self.backing, "-f", self.mnt],
                                    stderr=open(self.vfs_log, "w"))
        for _ in range(200):
            if os.path.ismount(self.mnt):
                return
            if self.vfs.poll() is not None:
                skip("volatilefs could not mount: " + open(self.vfs_log).read().strip()[-300:])
            time.sleep(0.02)
        fail("volatilefs did not mount")

    def discard(self):
        """The crash: every byte not fsynced is gone."""
        before = open(self.vfs_log).read().count("discarded")
        self.vfs.send_signal(signal.SIGUSR1)
        for _ in range(500):
            if open(self.vfs_log).read().count("discarded") > before:
                line = [l for l in open(self.vfs_log) if "discarded" in l][-1].strip()
                note(f"crash: {line}")
                return
            time.sleep(0.01)
        fail("volatilefs did not discard")

    # -- running the application ---------------------------------------------------------
    def app_env(self):
        e = dict(os.environ)
        self.runs += 1
        if self.mode != "weak":
            e.update(SPLITFT_PEERS=self.peer_list(), SPLITFT_ID=self.id, SPLITFT_DIRS=self.mnt,
                     SPLITFT_TIMEOUT_MS="1000", BUILD=BUILD,
                     SPLITFT_FLUSH_MS="300" if self.mode == "flusher" else "60000",
                     SPLITFT_STATS=os.path.join(self.tmp, f"stats.{self.runs}.json"))
        return e

    def saw_replay(self, text):
        for m in re.findall(r"replayed (\d+) records", text or ""):
            self.replayed += int(m)

    def cmd(self, argv):
        """argv under scripts/splitft-run (recovery first), or plainly for the weak mode."""
        if self.mode == "weak":
            return argv
        return [os.path.join(ROOT, "scripts/splitft-run"), "--"] + argv

    def spawn(self, argv, **kw):
        err = open(os.path.join(self.tmp, f"spawn.{self.runs + 1}.err"), "w+")
        kw.setdefault("stderr", err)
        p = subprocess.Popen(self.cmd(argv), env=self.app_env(), **kw)
        p.errfile = err
        self.procs.append(p)
        return p

    def reap(self, p, sig=signal.SIGKILL):
        """Stop a spawned process and collect what splitft-run said about recovery."""
        if p.poll() is None:
            p.send_signal(sig)
        p.wait()
        p.errfile.seek(0)
        self.saw_replay(p.errfile.read())

    def run(self, argv, **kw):
        r = subprocess.run(self.cmd(argv), env=self.app_env(), capture_output=True, text=True, **kw)
        self.saw_replay(r.stderr)
        return r

    def start(self):
        if self.mode != "nopeers" and self.mode != "weak":
            self.peers("start", "3")
        self.mount()

    def chaos(self, step, total):
        """MODE peers: kill peer 1 a third of the way, restart peer 2 empty at two thirds."""
        if self.mode != "peers":
            return
        if step == total // 3:
            self.peers("kill", "1")
            note("peer 1 killed")
        if step == 2 * total // 3:
            self.peers("kill", "2")
            self.peers("restart", "2")
            note("peer 2 restarted empty")

    def peers_used(self):
        """Bytes the live peers hold, summed (from their STATS)."""
        import json
        r = subprocess.run([os.path.join(BIN, "splitft"), "--peers", self.peer_list(), "stats"],
                           capture_output=True, text=True)
        return sum(json.loads(l)["stats"]["used"] for l in r.stdout.splitlines() if '"up"' in l)

    def stats(self):
        """The shim statistics of every run that exited normally, summed up."""
        import json
        tot = {"groups_ncl": 0, "real_syncs": 0, "modes": set()}
        for n in range(1, self.runs + 1):
            p = os.path.join(self.tmp, f"stats.{n}.json")
            if os.path.exists(p):
                st = json.load(open(p))
                tot["groups_ncl"] += st["groups_ncl"]
                tot["real_syncs"] += st["real_syncs"]
                tot["modes"].add(st["mode"])
        return tot

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        if self.vfs:
            self.vfs.terminate()
            try:
                self.vfs.wait(5)
            except subprocess.TimeoutExpired:
                self.vfs.kill()
        subprocess.run([os.path.join(ROOT, "scripts/ncl-peers"), "stop"], env=self.ncl_env,
                       capture_output=True)
        if os.environ.get("KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(self.backing, ignore_errors=True)


def expect_loss(env, lost, total):
    """The verdict: the weak mode must lose acknowledged writes; the others none."""
    if env.mode == "weak":
        if lost == 0:
            fail(f"negative control: the weak mode lost nothing of {total} acknowledged writes; "
                 "the fixture is not crashing anything")
        note(f"negative control: the weak mode lost {lost} of {total} acknowledged writes")
    elif lost:
        fail(f"{lost} of {total} acknowledged writes lost")
    else:
        note(f"all {total} acknowledged writes present")


# -- SQLite ----------------------------------------------------------------------------------

def sqlite(env, journal):
    db = os.path.join(env.mnt, "t.db")
    sync = "OFF" if env.mode == "weak" else "FULL"
    p = env.spawn(["sqlite3", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                  stderr=subprocess.DEVNULL)
    p.errfile = open(os.devnull)
    p.stdin.write(f"PRAGMA journal_mode={journal}; PRAGMA synchronous={sync};\n"
                  "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT);\nSELECT 'ready';\n")
    while "ready" not in p.stdout.readline():
        pass
    total, acked = 300, []
    for i in range(total):
        env.chaos(i, total)
        p.stdin.write(f"INSERT INTO t VALUES({i}, '{'x' * 200}'); SELECT 'ack', {i};\n")
        line = p.stdout.readline()
        if line.strip() != f"ack|{i}":
            fail(f"sqlite3 said {line!r} for insert {i}")
        acked.append(i)
        if i == total // 2 and journal == "WAL":  # a checkpoint under load (it prints a row too)
            p.stdin.write("PRAGMA wal_checkpoint(TRUNCATE); SELECT 'ack', -1;\n")
            while p.stdout.readline().strip() != "ack|-1":
                pass
    env.reap(p)
    env.discard()
    r = env.run(["sqlite3", db, "PRAGMA integrity_check; SELECT k FROM t;"])
    if os.environ.get("CRASH_DEBUG"):
        note(f"restart stderr: {r.stderr}")
    if r.returncode != 0 and env.mode == "weak" and "no such table" in r.stderr:
        return expect_loss(env, len(acked), len(acked))  # even the table was lost
    if r.returncode != 0:
        fail(f"sqlite3 after the crash: {r.stderr}")
    lines = r.stdout.split()
    if not lines or lines[0] != "ok":
        if env.mode == "weak" and "database disk image is malformed" in (r.stdout + r.stderr):
            note("negative control: the weak mode corrupted the database")
            return
        fail(f"integrity_check: {r.stdout[:300]} {r.stderr[:300]}")
    have = {int(x) for x in lines[1:]}
    missing = [i for i in acked if i not in have]
    if missing:
        note(f"missing: {missing[:20]}")
    expect_loss(env, len(missing), len(acked))


# -- Redis -----------------------------------------------------------------------------------

def resp(sock, *args):
    msg = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    sock.sendall(msg.encode())
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        data += chunk
    return data


def free_port():
    """A TCP port nothing listens on now: the kernel's pick for port 0 (from its ephemeral
    range, clear of the NCL peers' ports below 32768)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_pid(sock):
    """process_id from INFO server (a bulk reply, read whole)."""
    data = resp(sock, "INFO", "server")
    head, _, body = data.partition(b"\r\n")
    while len(body) < int(head[1:]) + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        body += chunk
    m = re.search(rb"process_id:(\d+)", body)
    return int(m.group(1)) if m else None


def redis_start(env, port):
    fsync = "no" if env.mode == "weak" else "always"
    p = env.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", env.mnt,
                   "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--daemonize", "no",
                   "--loglevel", "warning"],
                  stdout=open(os.path.join(env.tmp, "redis.log"), "a"))
    for _ in range(300):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if b"PONG" in resp(s, "PING"):
                # Ours, not another server on this port (scripts/splitft-run execs, so the
                # pid we spawned is redis-server's).
                pid = redis_pid(s)
                if pid != p.pid:
                    fail(f"port {port} is answered by another redis-server (pid {pid}, ours {p.pid})")
                return p, s
        except OSError:
            pass
        if p.poll() is not None:
            fail("redis-server exited: " + open(os.path.join(env.tmp, "redis.log")).read()[-500:])
        time.sleep(0.05)
    fail("redis-server did not answer")


def redis(env):
    port = free_port()
    p, s = redis_start(env, port)
    if env.mode == "flusher":
        # The flusher (every 300 ms here) makes logged data durable in the files and trims
        # it: the peers' memory goes back to near nothing without the application's help.
        # It may run during the SETs too, so what the peers hold right after them says
        # nothing; what counts is what was logged (the shim's statistics) and that, with
        # the application idle, the peers' memory falls to near zero (polled, not a fixed
        # sleep: a loaded machine may take longer).
        for i in range(500):
            if resp(s, "SET", f"warm{i}", "w" * 100) != b"+OK\r\n":
                fail("SET failed")
        after_sets = env.peers_used()
        near_zero = 4096  # a few empty sessions' bookkeeping, against ~70 KB logged x 3 peers
        deadline, low = time.monotonic() + 30, after_sets
        while low > near_zero and time.monotonic() < deadline:
            time.sleep(0.1)
            low = env.peers_used()
        env.reap(p, signal.SIGTERM)
        st = json.load(open(os.path.join(env.tmp, f"stats.{env.runs}.json")))
        note(f"logged {st['bytes_ncl']} bytes in {st['groups_ncl']} groups; the peers held "
             f"{after_sets} bytes after the SETs and {low} once idle; "
             f"{st['flushes']} flushes, {st['trims']} trims")
        if st["groups_ncl"] < 500 or st["bytes_ncl"] < 500 * 100:
            fail(f"the SETs did not go to the log ({st['groups_ncl']} groups, "
                 f"{st['bytes_ncl']} bytes): nothing for the flusher to give back")
        if low > near_zero:
            fail(f"the flusher did not give the peers' memory back: {low} bytes held after "
                 f"30 s idle ({st['bytes_ncl']} bytes logged)")
        if st["trims"] == 0:
            fail("the peers' memory fell without a trim")
        return
    total, acked = 2000, []
    for i in range(total):
        env.chaos(i, total)
        if resp(s, "SET", f"k{i}", f"v{i}-" + "y" * 100) != b"+OK\r\n":
            fail("SET failed")
        acked.append(i)
        if i == total // 3:
            resp(s, "BGREWRITEAOF")  # a fork under load
        if i == 2 * total // 3:
            resp(s, "BGSAVE")
    time.sleep(0.2)  # let the rewrite finish or not: both must be safe
    env.reap(p)
    env.discard()
    r = subprocess.run(["redis-check-aof", os.path.join(env.mnt, "appendonlydir/appendonly.aof.manifest")],
                       capture_output=True, text=True, input="n\n")
    p, s = redis_start(env, port)
    missing = 0
    for i in acked:
        if resp(s, "GET", f"k{i}").startswith(b"$-1"):
            missing += 1
    env.reap(p, signal.SIGTERM)
    if env.mode != "weak" and ("is valid" not in r.stdout and "OK" not in r.stdout):
        fail(f"redis-check-aof: {r.stdout[-400:]} {r.stderr[-400:]}")
    expect_loss(env, missing, len(acked))


# -- RocksDB ---------------------------------------------------------------------------------

def rocksdb(env):
    db = os.path.join(env.mnt, "db")
    sync = "0" if env.mode == "weak" else "1"
    # Small memtables: flushes, new SST files, WAL rotation and deletion (renames and unlinks)
    # happen under the load. The weak control keeps the default (64 MiB): its memtable, whose
    # only copy is the unsynced WAL, then holds the writes it acknowledged last.
    wbs = 64 << 20 if env.mode == "weak" else 65536
    p = env.spawn(["db_bench", "--benchmarks=fillseq", f"--db={db}", f"--sync={sync}", "--num=100000000",
                   "--value_size=100", f"--write_buffer_size={wbs}", "--max_write_buffer_number=2",
                   "--disable_auto_compactions=false", "--stats_interval=0"],
                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    p.errfile = open(os.devnull)
    done = 0
    start = time.time()
    buf = ""
    total_time = 6.0
    step = 0
    os.set_blocking(p.stderr.fileno(), False)
    while time.time() - start < total_time:
        try:
            chunk = p.stderr.read()
        except TypeError:
            chunk = None
        if chunk:
            buf += chunk
            m = re.findall(r"finished (\d+) ops", buf)
            if m:
                done = int(m[-1])
        if p.poll() is not None:
            fail("db_bench exited: " + buf[-500:])
        new_step = int((time.time() - start) / total_time * 3)
        if new_step != step:
            step = new_step
            env.chaos({1: 1, 2: 2}.get(step, 0), 3)
        time.sleep(0.05)
    env.reap(p)
    if done == 0:
        fail("db_bench reported no progress: " + buf[-300:])
    env.discard()
    r = env.run(["ldb", f"--db={db}", "scan", "--key_hex", "--max_keys=100000000"])
    if r.returncode != 0:
        fail(f"ldb scan: {r.stderr[-500:]}")
    keys = set()
    for line in r.stdout.splitlines():
        k = line.split(" : ")[0].strip()
        if k.startswith("0x") and len(k) >= 18:
            keys.add(int(k[2:18], 16))
    missing = sum(1 for i in range(done) if i not in keys)
    c = env.run(["ldb", f"--db={db}", "checkconsistency"])
    if env.mode != "weak" and (c.returncode != 0 or "OK" not in c.stdout):
        fail(f"ldb checkconsistency: {c.stdout[-300:]} {c.stderr[-300:]}")
    note(f"db_bench had acknowledged {done} puts before the crash")
    expect_loss(env, missing, done)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    app, mode = sys.argv[1], sys.argv[2]
    for tool in {"sqlite-wal": "sqlite3", "sqlite-delete": "sqlite3", "redis": "redis-server",
                 "rocksdb": "db_bench"}[app].split():
        if not shutil.which(tool):
            skip(f"{tool} is not installed")
    env = Env(mode, app)
    try:
        env.start()
        if app == "sqlite-wal":
            sqlite(env, "WAL")
        elif app == "sqlite-delete":
            sqlite(env, "DELETE")
        elif app == "redis":
            redis(env)
        else:
            rocksdb(env)
        st = env.stats()
        if mode != "weak":
            note(f"recovery replayed {env.replayed} records; runs that exited normally: "
                 f"{st['groups_ncl']} groups to the log, {st['real_syncs']} real syncs, modes {st['modes']}")
            if mode == "nopeers" and (st["groups_ncl"] != 0 or env.replayed != 0):
                fail("without peers every sync must be real")
            if mode in ("splitft", "peers") and env.replayed == 0:
                fail("recovery replayed nothing: the crash lost no logged write, so the test "
                     "did not exercise SplitFT")
    finally:
        env.close()
    print("ok")


if __name__ == "__main__":
    main()
