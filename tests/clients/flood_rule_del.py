"""Floods RTM_DELRULE requests the kernel refuses, 16 KiB per send, for SECONDS seconds.

Usage: flood_rule_del.py SECONDS [SENDS]
With SENDS, it stops after that many sends (a measured dose rather than a flood).
Meant to run unprivileged (no CAP_NET_ADMIN): every message is refused with EPERM. Each send
carries as many 28-byte RTM_DELRULE messages as fit in 16 KiB; no ack is asked for (the kernel
still answers the refusals; they are left unread, so the socket's receive queue fills and the
kernel drops them). Prints "<pid> <sends> <messages> <seconds>" when done.
"""
import os
import socket
import struct
import sys
import time

RTM_DELRULE = 33
NLM_F_REQUEST = 0x1
SEND_BYTES = 16384

seconds = float(sys.argv[1])
max_sends = int(sys.argv[2]) if len(sys.argv) > 2 else None
# struct nlmsghdr (16) + struct fib_rule_hdr (12): 28 bytes, already 4-aligned.
body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
per_send = SEND_BYTES // (16 + len(body))
buf = b"".join(
    struct.pack("=IHHII", 16 + len(body), RTM_DELRULE, NLM_F_REQUEST, seq, 0) + body
    for seq in range(per_send)
)

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
start = time.monotonic()
sends = 0
while time.monotonic() - start < seconds and (max_sends is None or sends < max_sends):
    try:
        s.send(buf)
    except OSError:
        # ENOBUFS and the like: the flood goes on.
        pass
    sends += 1
elapsed = time.monotonic() - start
print(os.getpid(), sends, sends * per_send, round(elapsed, 3), flush=True)
