/* Deletes an IPv4 policy rule or route with a hand-built RTM_DELRULE/RTM_DELROUTE sent through
 * io_uring (IORING_OP_SENDMSG, its ack read with IORING_OP_RECVMSG): no sendmsg/sendto/write
 * syscall carries the request, so the syscall path has no request record of it.
 *
 * Usage: uring_del rule PRIORITY TABLE [async] [hold]
 *        uring_del route A.B.C.D/LEN TABLE [async] [hold]
 * `async` sets IOSQE_ASYNC (the send runs on an io-wq worker thread, not in io_uring_enter);
 * `hold` keeps the socket open until a line arrives on stdin, else the process exits at once.
 * The socket is bound to port id 0x40000000 | pid (a process may choose any free one).
 * Prints "<pid> <port id> <error>" (error: the kernel's ack code, 0 on success) and flushes.
 * Raw syscalls only (no liburing): the test builds it with `cc`.
 */
#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static void ring_setup(struct ring *r) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (r->fd < 0)
        die("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_CQ_RING);
    r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        die("mmap io_uring");
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* Submits one msghdr operation and waits for its completion; returns its result. */
static int ring_msg(struct ring *r, int op, int sock, struct msghdr *msg, int flags) {
    unsigned tail = *r->sq_tail;
    unsigned i = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[i];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = (uint8_t)op;
    sqe->fd = sock;
    sqe->addr = (uint64_t)(uintptr_t)msg;
    sqe->len = 1;
    sqe->flags = (uint8_t)flags;
    r->sq_array[i] = i;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        die("io_uring_enter");
    unsigned head = *r->cq_head;
    while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        ;
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return res;
}

static void put_attr(char *buf, unsigned *len, unsigned short type, const void *data,
                     unsigned short n) {
    struct rtattr *a = (struct rtattr *)(buf + *len);
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(n);
    memcpy(RTA_DATA(a), data, n);
    *len += RTA_ALIGN(a->rta_len);
}

int main(int argc, char **argv) {
    if (argc < 4)
        return fprintf(stderr, "usage: uring_del rule PRIO TABLE | route A.B.C.D/LEN TABLE "
                               "[async] [hold]\n"),
               2;
    int async = 0, hold = 0;
    for (int i = 4; i < argc; i++) {
        async |= !strcmp(argv[i], "async");
        hold |= !strcmp(argv[i], "hold");
    }
    uint32_t table = (uint32_t)strtoul(argv[3], 0, 10);
    char buf[256];
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
    unsigned len = NLMSG_HDRLEN;
    if (!strcmp(argv[1], "rule")) {
        uint32_t prio = (uint32_t)strtoul(argv[2], 0, 10);
        struct fib_rule_hdr *frh = (struct fib_rule_hdr *)(buf + len);
        frh->family = AF_INET;
        len += NLMSG_ALIGN(sizeof *frh);
        put_attr(buf, &len, FRA_PRIORITY, &prio, 4);
        put_attr(buf, &len, FRA_TABLE, &table, 4);
        nlh->nlmsg_type = RTM_DELRULE;
    } else {
        char addr[64];
        snprintf(addr, sizeof addr, "%s", argv[2]);
        char *slash = strchr(addr, '/');
        if (!slash)
            return fprintf(stderr, "route needs A.B.C.D/LEN\n"), 2;
        *slash = 0;
        struct in_addr dst;
        if (inet_pton(AF_INET, addr, &dst) != 1)
            return fprintf(stderr, "bad address %s\n", addr), 2;
        struct rtmsg *rtm = (struct rtmsg *)(buf + len);
        rtm->rtm_family = AF_INET;
        rtm->rtm_dst_len = (unsigned char)atoi(slash + 1);
        rtm->rtm_table = RT_TABLE_UNSPEC;
        rtm->rtm_scope = RT_SCOPE_NOWHERE;
        len += NLMSG_ALIGN(sizeof *rtm);
        put_attr(buf, &len, RTA_DST, &dst, 4);
        put_attr(buf, &len, RTA_TABLE, &table, 4);
        nlh->nlmsg_type = RTM_DELROUTE;
    }
    nlh->nlmsg_len = len;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = 7171;

    int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (sock < 0)
        die("socket");
    /* A port id of our choosing, not the pid autobind would give: the test tells them apart. */
    struct sockaddr_nl local = {.nl_family = AF_NETLINK,
                                .nl_pid = 0x40000000u | (uint32_t)getpid()};
    if (bind(sock, (struct sockaddr *)&local, sizeof local) < 0)
        die("bind");
    socklen_t alen = sizeof local;
    if (getsockname(sock, (struct sockaddr *)&local, &alen) < 0)
        die("getsockname");

    struct ring r;
    ring_setup(&r);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_name = &kernel, .msg_namelen = sizeof kernel, .msg_iov = &iov,
                         .msg_iovlen = 1};
    int sent = ring_msg(&r, IORING_OP_SENDMSG, sock, &msg, async ? IOSQE_ASYNC : 0);
    if (sent < 0) {
        fprintf(stderr, "io_uring sendmsg: %s\n", strerror(-sent));
        return 1;
    }
    char reply[4096];
    struct iovec riov = {.iov_base = reply, .iov_len = sizeof reply};
    struct msghdr rmsg = {.msg_iov = &riov, .msg_iovlen = 1};
    int got = ring_msg(&r, IORING_OP_RECVMSG, sock, &rmsg, 0);
    if (got < (int)(NLMSG_HDRLEN + sizeof(int))) {
        fprintf(stderr, "io_uring recvmsg: %d\n", got);
        return 1;
    }
    struct nlmsghdr *ack = (struct nlmsghdr *)reply;
    if (ack->nlmsg_type != NLMSG_ERROR || ack->nlmsg_seq != nlh->nlmsg_seq)
        return fprintf(stderr, "unexpected reply type %u seq %u\n", ack->nlmsg_type,
                       ack->nlmsg_seq),
               1;
    int error = ((struct nlmsgerr *)NLMSG_DATA(ack))->error;
    printf("%d %u %d\n", getpid(), local.nl_pid, error);
    fflush(stdout);
    if (hold) {
        char line[8];
        if (!fgets(line, sizeof line, stdin))
            return 0;
    }
    return 0;
}
