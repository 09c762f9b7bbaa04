/* Linked into the shipped (make cross) binaries only, which link musl statically: the symbols that
 * Debian's glibc-built libnl and libsodium archives and the Embedded Swift standard library take
 * from glibc and musl names otherwise. The fortified variants check nothing more here: their
 * callers pass lengths the compiler already knew. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

int __fprintf_chk(FILE *file, int flag, const char *format, ...) {
    (void)flag;
    va_list arguments;
    va_start(arguments, format);
    int written = vfprintf(file, format, arguments);
    va_end(arguments);
    return written;
}

int __vfprintf_chk(FILE *file, int flag, const char *format, va_list arguments) {
    (void)flag;
    return vfprintf(file, format, arguments);
}

int __snprintf_chk(char *buffer, size_t length, int flag, size_t bufferLength, const char *format, ...) {
    (void)flag;
    if (length > bufferLength) abort();
    va_list arguments;
    va_start(arguments, format);
    int written = vsnprintf(buffer, length, format, arguments);
    va_end(arguments);
    return written;
}

int __vasprintf_chk(char **result, int flag, const char *format, va_list arguments) {
    (void)flag;
    return vasprintf(result, format, arguments);
}

void __explicit_bzero_chk(void *bytes, size_t length, size_t bufferLength) {
    if (length > bufferLength) abort();
    explicit_bzero(bytes, length);
}

/* The Embedded standard library's random source (SystemRandomNumberGenerator): the kernel's
 * getrandom, /dev/urandom where the kernel predates it; never a byte that is not random. */
void arc4random_buf(void *bytes, size_t length) {
    unsigned char *next = bytes;
    while (length > 0) {
        ssize_t got = getrandom(next, length, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        next += got;
        length -= (size_t)got;
    }
    if (length == 0) return;
    int device = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (device < 0) abort();
    while (length > 0) {
        ssize_t got = read(device, next, length);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) abort();
        next += got;
        length -= (size_t)got;
    }
    close(device);
}
