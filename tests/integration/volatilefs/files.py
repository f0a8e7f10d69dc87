# files.py: precise write/fsync/rename sequences on a volatilefs mount, a crash (SIGUSR1)
# between them, and what must and must not survive it. Driven by test_volatilefs:
#   python3 files.py MOUNT BACKING VOLATILEFS_PID LOG
# Prints "-- ok: ..." per check; exits 1 with "FAIL: ..." on the first failed one.
import os
import signal
import sys
import time

MNT, BACKING, VPID, LOG = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def p(name):
    return os.path.join(MNT, name)


def fail(what):
    print(f"FAIL: {what}", file=sys.stderr)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)
    print(f"-- ok: {what}")


def log_lines(prefix):
    with open(LOG) as f:
        return [line.strip() for line in f if line.startswith(prefix)]


def signal_and_wait(sig, prefix):
    """Send sig to volatilefs and return the log line that says it is done."""
    n = len(log_lines(prefix))
    os.kill(VPID, sig)
    deadline = time.time() + 10
    while len(log_lines(prefix)) <= n:
        if time.time() > deadline:
            fail(f"no '{prefix}' line in {LOG} after signal {sig}")
        time.sleep(0.02)
    return log_lines(prefix)[n]


def crash():
    return signal_and_wait(signal.SIGUSR1, "volatilefs: discarded")


def write(name, data, off=None, sync=False, flags=os.O_WRONLY | os.O_CREAT):
    fd = os.open(p(name), flags, 0o644)
    try:
        if off is None:
            os.write(fd, data)
        else:
            os.pwrite(fd, data, off)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read(name):
    with open(p(name), "rb") as f:
        return f.read()


def size(name):
    return os.stat(p(name)).st_size


def backing_size(name):
    return os.stat(os.path.join(BACKING, name)).st_size


# ---- before the crash ---------------------------------------------------------------
# (a) reads see unsynced writes, holes read as zeros, sizes include the overlay
write("never", b"never")
check(read("never") == b"never", "unsynced write is readable after close")
check(size("never") == 5 and backing_size("never") == 0, "size 5 on the mount, 0 in backing")
write("never", b"X", off=100)
check(read("never") == b"never" + bytes(95) + b"X", "pwrite past the end: hole reads as zeros")
check(size("never") == 101, "size includes overlay growth")

# (b, c) a synced prefix and an unsynced tail
write("synced", b"durable", sync=True)
check(backing_size("synced") == 7, "fsync wrote the data to the backing file")
write("synced", b"-tail", off=7)
write("synced", b"Z", off=1000)
check(read("synced")[:12] == b"durable-tail" and size("synced") == 1001, "tail visible before crash")
# a write spanning synced and unsynced data
write("span", b"aaaaaaaa", sync=True)
write("span", b"BBBBBBBB", off=4)
check(read("span") == b"aaaaBBBBBBBB", "write spanning backing and overlay")
write("span", b"", sync=True)

# (d) written, closed, reopened: still unsynced
write("reopened", b"abc")
fd = os.open(p("reopened"), os.O_RDWR)
check(os.read(fd, 10) == b"abc", "reopened file reads its unsynced data")
os.write(fd, b"def")
os.close(fd)

# (e) metadata is durable; overlays follow renames and hard links
os.mkdir(p("dir"))
write("dir/empty", b"")
write("moved", b"payload", sync=True)
os.rename(p("moved"), p("dir/moved2"))
write("follow", b"xyz")
os.rename(p("follow"), p("followed"))
fd = os.open(p("followed"), os.O_RDONLY)
os.fsync(fd)  # fsync through a read-only descriptor, under the new name
os.close(fd)
write("h1", b"link")
os.link(p("h1"), p("h2"))
check(read("h2") == b"link", "hard link sees the other name's unsynced data")
fd = os.open(p("h2"), os.O_RDONLY)
os.fsync(fd)
os.close(fd)
os.symlink("synced", p("sl"))
check(read("sl")[:7] == b"durable", "symlink")
os.chmod(p("dir/empty"), 0o600)

# rename over a file with unsynced data: its overlay goes with it
write("victim", b"VICTIM-UNSYNCED")
write("winner", b"W", sync=True)
os.rename(p("winner"), p("victim"))
check(read("victim") == b"W", "rename over a file replaces its unsynced data")
# unlink of the last link drops the overlay, also when the kernel's release of the closed
# descriptor reaches volatilefs around the unlink (it is asynchronous): many times, so
# that a race between the two shows in the crash's count below
for i in range(300):
    write(f"gone{i}", b"GONE-UNSYNCED")
    os.unlink(p(f"gone{i}"))

# O_APPEND lands at the logical end, also when the kernel's size is stale (after the crash)
write("app", b"x\n", sync=True)
app_fd = os.open(p("app"), os.O_WRONLY | os.O_APPEND)
os.write(app_fd, b"y\n")
check(read("app") == b"x\ny\n", "O_APPEND write")

# truncate cuts the overlay and is durable at once; growing reads as zeros
write("trunc", b"0123456789", sync=True)
write("trunc", b"abcdefghij", off=20)
os.truncate(p("trunc"), 15)
check(read("trunc") == b"0123456789" + bytes(5), "truncate cut the overlay, grown part zeros")
fd = os.open(p("trunc2"), os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"abcdef")
os.ftruncate(fd, 3)
os.close(fd)
check(read("trunc2") == b"abc", "ftruncate of unsynced data")

# O_DSYNC writes are durable by themselves
write("dsync", b"dsync", flags=os.O_WRONLY | os.O_CREAT | os.O_DSYNC)

# several processes write one file at once (disjoint records), each fsyncs
REC, PER, PROCS = 16, 200, 4
write("shared", b"")
kids = []
for k in range(PROCS):
    pid = os.fork()
    if pid == 0:
        fd = os.open(p("shared"), os.O_RDWR)
        for i in range(PER):
            rec = f"{k}:{i:05d}".ljust(REC - 1).encode() + b"\n"
            os.pwrite(fd, rec, (i * PROCS + k) * REC)
        os.fsync(fd)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    _, status = os.waitpid(pid, 0)
    check(status == 0, f"writer {pid} exited cleanly")
want_shared = b"".join(
    f"{k}:{i:05d}".ljust(REC - 1).encode() + b"\n" for i in range(PER) for k in range(PROCS))
check(read("shared") == want_shared, "concurrent writers from several processes")

# readdir of a large directory
os.mkdir(p("big"))
names = [f"f{i:05d}" for i in range(3000)]
for n in names:
    os.close(os.open(p("big/" + n), os.O_WRONLY | os.O_CREAT, 0o644))
check(sorted(os.listdir(p("big"))) == names, "readdir lists all 3000 entries")

# many small synchronous writes (rate for the record; the benchmarks do not run here)
fd = os.open(p("rate"), os.O_WRONLY | os.O_CREAT, 0o644)
t0 = time.time()
for i in range(2000):
    os.write(fd, b"r" * 100)
    os.fdatasync(fd)
dt = time.time() - t0
os.close(fd)
print(f"-- note: {2000 / dt:.0f} small writes+fdatasync per second")
check(2000 / dt > 200, "small synchronous writes are not pathologically slow")

# ---- the crash ------------------------------------------------------------------------
line = crash()
print(f"-- {line}")
# never 6 + synced 6 + reopened 6 + app 2 + trunc2 3 = 23 bytes in 5 files; the
# renamed-over, the unlinked and the truncated-away data are not among them.
check(line.startswith("volatilefs: discarded 23 bytes in 5 files"), "discard counted " + line)

check(read("never") == b"" and size("never") == 0, "never-synced file: content and size gone")
check(read("synced") == b"durable" and size("synced") == 7, "synced prefix kept, tail and size gone")
check(read("span") == b"aaaaBBBBBBBB", "synced span kept")
check(read("reopened") == b"", "closed and reopened unsynced data lost")
check(os.path.exists(p("dir/empty")) and not os.path.exists(p("moved")), "create and rename kept")
check(os.stat(p("dir/empty")).st_mode & 0o777 == 0o600, "chmod kept")
check(read("dir/moved2") == b"payload", "renamed synced file kept")
check(read("followed") == b"xyz", "overlay followed the rename and was synced")
check(read("h1") == b"link" and read("h2") == b"link", "hard link overlay synced through the other name")
check(os.readlink(p("sl")) == "synced", "symlink kept")
check(read("victim") == b"W", "renamed-over file stays replaced")
check(not os.path.exists(p("gone")), "unlink kept")
check(read("trunc") == b"0123456789" + bytes(5) and size("trunc") == 15, "truncate kept")
check(read("trunc2") == bytes(3), "ftruncate kept, the unsynced data under it lost")
check(read("dsync") == b"dsync", "O_DSYNC write kept")
check(read("shared") == want_shared, "fsynced concurrent writes kept")
check(len(os.listdir(p("big"))) == 3000, "large directory kept")
os.write(app_fd, b"z\n")  # the kernel still believes the file is 4 bytes long
os.fsync(app_fd)
os.close(app_fd)
check(read("app") == b"x\nz\n", "O_APPEND after the crash lands at the real end")

# SIGUSR2 writes everything back
write("usr2", b"flushed")
line = signal_and_wait(signal.SIGUSR2, "volatilefs: synced")
check(line.startswith("volatilefs: synced 7 bytes in 1 files"), "sync-all counted " + line)
crash()
check(read("usr2") == b"flushed", "SIGUSR2 made unsynced data durable")
