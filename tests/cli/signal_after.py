#!/usr/bin/env python3
"""signal_after.py N SIGNAL LOG COMMAND...: runs COMMAND with its stderr copied into LOG and sends
it SIGNAL (KILL, INT, TERM) as soon as its stderr shows N finished eval cases ("#0: correct" or
"#0: wrong" lines); then keeps copying its stderr until it exits. Exits with COMMAND's status
(128 + the signal when a signal ended it, as a shell reports it).

COMMAND's stderr is a pipe of one page, read line by line as it comes: COMMAND cannot run more than
that page ahead of this reader, so the signal lands right after the N-th case even on a loaded
machine (kill_after_cases in common.sh polls a file instead, which is fine for slow runs only).
"""
import fcntl
import os
import re
import signal
import subprocess
import sys

F_SETPIPE_SZ = 1031  # Linux; the pipe keeps its default size where it is refused


def main():
    if len(sys.argv) < 5:
        sys.exit("usage: signal_after.py N SIGNAL LOG COMMAND...")
    n, sig, log, cmd = int(sys.argv[1]), getattr(signal, "SIG" + sys.argv[2]), sys.argv[3], sys.argv[4:]
    case = re.compile(rb"#0: (correct|wrong)")
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    except OSError:
        pass
    proc = subprocess.Popen(cmd, stderr=write_end)
    os.close(write_end)
    seen, sent = 0, n <= 0
    if sent:
        proc.send_signal(sig)
    with open(log, "wb") as out, os.fdopen(read_end, "rb", buffering=0) as err:
        pending = b""
        while True:
            chunk = err.read(4096)
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if not sent:
                seen += sum(1 for line in lines if case.search(line))
                if seen >= n:
                    proc.send_signal(sig)
                    sent = True
    rc = proc.wait()
    sys.exit(128 - rc if rc < 0 else rc)


if __name__ == "__main__":
    main()
