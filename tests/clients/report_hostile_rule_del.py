"""Deletes an IPv4 rule by priority (raw RTM_DELRULE) under a hostile name, for report tests.

Usage: report_hostile_rule_del.py PRIORITY [ARGS...]
Sets its own comm with prctl(PR_SET_NAME) to `<script>|\\x1b[2J` (15 bytes) so that the comm, and
the ARGS in its command line, carry markup, table pipes and terminal escapes into the event.
Prints "<pid> <error>" where error is the kernel's (negative) ack code, 0 on success.
"""
import ctypes
import os
import socket
import struct
import sys

PR_SET_NAME = 15
RTM_DELRULE = 33
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
FRA_PRIORITY = 6
NLMSG_ERROR = 2

prio = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_NAME, ctypes.c_char_p(b"<script>|\x1b[2J"), 0, 0, 0) != 0:
    sys.exit(f"prctl: errno {ctypes.get_errno()}")

body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
attr = struct.pack("=HHI", 8, FRA_PRIORITY, prio)
seq = 4343
payload = body + attr
msg = struct.pack("=IHHII", 16 + len(payload), RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + payload
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.sendto(msg, (0, 0))
reply, _ = s.recvfrom(65536)
_, rtype, _, rseq, _ = struct.unpack_from("=IHHII", reply)
if rtype != NLMSG_ERROR or rseq != seq:
    sys.exit(f"unexpected reply type {rtype} seq {rseq}")
(error,) = struct.unpack_from("=i", reply, 16)
print(os.getpid(), error, flush=True)
