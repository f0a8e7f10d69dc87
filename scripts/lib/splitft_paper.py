"""scripts/lib/splitft_paper.py: what the scripts/splitft-paper parts share: errors, commands,
a free port, and waiting for a redis-server to answer."""
import os
import socket
import subprocess
import sys
import time

PROG = "splitft-paper/" + os.path.basename(sys.argv[0])


def die(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(1)


def sh(argv, env=None, check=True):
    """Run argv to completion, output captured; with check, die unless it exits 0."""
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        die(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-600:]}")
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_redis(port, proc, what, errfile=None):
    """Until the redis-server proc answers PING on port (it answers -LOADING while it reads its
    files); die when it exits or has not answered in 30 s, with errfile's tail if given."""
    def tail():
        return ": " + open(errfile).read()[-300:] if errfile and os.path.exists(errfile) else ""
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            die(f"redis-server ({what}) exited with {proc.returncode}{tail()}")
        time.sleep(0.05)
    die(f"redis-server ({what}) did not answer in 30 s{tail()}")
