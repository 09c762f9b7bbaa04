// Linux headers that Glibc's Swift module map does not export.
#pragma once
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
