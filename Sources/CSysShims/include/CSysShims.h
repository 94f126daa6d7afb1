#ifndef KILNTALLY_CSYSSHIMS_H
#define KILNTALLY_CSYSSHIMS_H
#include <sys/timex.h>

/// Names the calling thread (Linux keeps the first 15 bytes); shows in `top -H` and core dumps.
/// Defined in shims.c, which is compiled with _GNU_SOURCE (this header must not set it: it would change how
/// glibc's headers parse inside the Clang module Swift imports).
void kt_set_thread_name(const char *name);

/// TIOCEXCL (exclusive != 0) or TIOCNXCL (exclusive == 0) on the tty `fd`: while set, open(2) of the tty fails with
/// EBUSY for every process without CAP_SYS_ADMIN. ioctl is variadic, which Swift cannot call. 0, or -1 with errno.
int kt_tty_set_exclusive(int fd, int exclusive);

/// A new pseudo-terminal (posix_openpt, grantpt, unlockpt, ptsname_r — hidden from Swift without _XOPEN_SOURCE):
/// the master's descriptor (O_RDWR | O_NOCTTY | O_CLOEXEC), its slave's path in `slave` (`size` bytes), or -1 with
/// errno.
int kt_open_pty(char *slave, unsigned long size);

/// 1 when the kernel considers the system clock synchronized (chrony/timesyncd/ntpd cleared STA_UNSYNC),
/// 0 when it does not, -1 when adjtimex failed.
static inline int kt_clock_synchronized(void) {
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0) return -1;
    return (state == TIME_ERROR || (tx.status & STA_UNSYNC)) ? 0 : 1;
}
#endif
