#define _GNU_SOURCE
#include "CFerrySystem.h"
#include <sys/syscall.h>
#include <unistd.h>

int ferry_thread_setgroups(int count, const gid_t *groups) {
    return (int)syscall(SYS_setgroups, (long)count, groups);
}

int ferry_thread_setfsuid(uid_t uid) { return (int)syscall(SYS_setfsuid, (long)uid); }

int ferry_thread_setfsgid(gid_t gid) { return (int)syscall(SYS_setfsgid, (long)gid); }
