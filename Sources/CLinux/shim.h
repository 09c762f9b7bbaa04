// The C library and the Linux headers LANrage uses, in one module: the hosted build and the
// Embedded one (which has no Glibc module) import the same declarations.
#pragma once
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <ifaddrs.h>
#include <dirent.h>
#include <pthread.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <signal.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/memfd.h>

/// An anonymous in-memory file that can be sealed (memfd_create is a GNU extension).
static inline int lanrage_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

/// Seals a memfd's size: writes beyond it fail (EPERM) instead of growing it.
static inline int lanrage_seal_size(int fd) {
    return fcntl(fd, 1033 /* F_ADD_SEALS */, 0x0002 /* F_SEAL_SHRINK */ | 0x0004 /* F_SEAL_GROW */);
}

// Socket types and flags as plain ints: glibc declares them as members of an enum, musl as macros.
static const int lanrage_sock_stream = SOCK_STREAM;
static const int lanrage_sock_dgram = SOCK_DGRAM;
static const int lanrage_sock_raw = SOCK_RAW;
static const int lanrage_sock_nonblock = SOCK_NONBLOCK;
static const int lanrage_sock_cloexec = SOCK_CLOEXEC;
// epoll's events, likewise.
static const uint32_t lanrage_epollin = EPOLLIN;
static const uint32_t lanrage_epollout = EPOLLOUT;

// IPv6 socket options (Linux's values; some C libraries declare them only for GNU or BSD sources).
#ifndef IPV6_CHECKSUM
#define IPV6_CHECKSUM 7
#endif
#ifndef IPV6_RECVPKTINFO
#define IPV6_RECVPKTINFO 49
#endif
#ifndef IPV6_PKTINFO
#define IPV6_PKTINFO 50
#endif
static const int lanrage_ipv6_checksum = IPV6_CHECKSUM;
static const int lanrage_ipv6_recvpktinfo = IPV6_RECVPKTINFO;

/// Receives one datagram on an IPv6 socket that has IPV6_RECVPKTINFO set; `addresses` gets its
/// source address (16 bytes), then the address it was sent to (16 bytes, zero when the kernel gave
/// none). The CMSG macros are not visible to Swift.
static inline long lanrage_recv_from_to6(int fd, void *buffer, size_t size, unsigned char *addresses) {
    struct sockaddr_in6 from;
    struct iovec vector = { .iov_base = buffer, .iov_len = size };
    union { struct cmsghdr align; char bytes[CMSG_SPACE(20)]; } control;
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_name = &from;
    message.msg_namelen = sizeof from;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
    long count = (long)recvmsg(fd, &message, 0);
    memset(addresses, 0, 32);
    if (count < 0) return count;
    memcpy(addresses, &from.sin6_addr, 16);
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == IPPROTO_IPV6 && header->cmsg_type == IPV6_PKTINFO && header->cmsg_len >= CMSG_LEN(20)) {
            memcpy(addresses + 16, CMSG_DATA(header), 16);
        }
    }
    return count;
}

/// The calling thread's errno (a macro in C, so not visible to Swift as a variable).
static inline int lanrage_errno(void) { return errno; }

// open, openat and fcntl are variadic in C, and Swift cannot call a variadic function.
static inline int lanrage_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }
static inline int lanrage_openat(int directory, const char *path, int flags, mode_t mode) { return openat(directory, path, flags, mode); }
static inline int lanrage_fcntl(int fd, int command, int argument) { return fcntl(fd, command, argument); }

/// The process's environment (declared by unistd.h only for GNU sources).
extern char **environ;
static inline char **lanrage_environ(void) { return environ; }

/// Sets a socket's receive and send timeouts (SO_RCVTIMEO is an expression, not a constant, where
/// time_t may be 32 or 64 bits, as on 32-bit ARM).
static inline int lanrage_set_socket_timeouts(int fd, long long milliseconds) {
    struct timeval time = { .tv_sec = (time_t)(milliseconds / 1000), .tv_usec = (suseconds_t)(milliseconds % 1000 * 1000) };
    int received = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, sizeof time);
    int sent = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, sizeof time);
    return received < 0 ? received : sent;
}

/// The commit the binary was built from, as the build passes it (-DLANRAGE_COMMIT="…"), else "".
static inline const char *lanrage_build_commit(void) {
#ifdef LANRAGE_COMMIT
    return LANRAGE_COMMIT;
#else
    return "";
#endif
}
