#define _GNU_SOURCE 1
#include <pthread.h>
#include <sys/ioctl.h>
#include "CSysShims.h"

void kt_set_thread_name(const char *name) {
    char buf[16];
    int i = 0;
    for (; i < 15 && name[i]; i++) buf[i] = name[i];
    buf[i] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int kt_tty_set_exclusive(int fd, int exclusive) {
    return ioctl(fd, exclusive ? TIOCEXCL : TIOCNXCL);
}
