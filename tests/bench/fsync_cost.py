#!/usr/bin/env python3
"""What one fdatasync costs on the disk under DIR (default: the current
directory): `write` of 1,200 bytes (about two audit journal records) then
`fdatasync`, 300 times, appending to the end of a file, and again
overwriting zeros already on disk (what the journal does at `fsync`).
Prints p50 and p90 in microseconds. A tool, not a test.

    python3 tests/bench/fsync_cost.py [DIR]
"""
import os
import sys
import time

ROUNDS = 300
RECORD = b"x" * 1200


def run(directory, zeros_ahead):
    path = os.path.join(directory, f"hoop-fsync-cost-{os.getpid()}.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if zeros_ahead:
            os.write(fd, b"\0" * (ROUNDS * len(RECORD) + (1 << 20)))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        took = []
        for _ in range(ROUNDS):
            os.write(fd, RECORD)
            start = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.remove(path)
    took.sort()
    return took[ROUNDS // 2] * 1e6, took[ROUNDS * 9 // 10] * 1e6


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    for _ in range(2):
        for zeros_ahead, name in ((False, "appending"), (True, "over zeros")):
            p50, p90 = run(directory, zeros_ahead)
            print(f"{name:11} fdatasync p50 {p50:6.0f} us  p90 {p90:6.0f} us")


if __name__ == "__main__":
    main()
