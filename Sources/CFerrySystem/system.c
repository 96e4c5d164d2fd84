#define _GNU_SOURCE
#include "CFerrySystem.h"
#include <sys/syscall.h>
#include <unistd.h>

int ferry_thread_setgroups(int count, const gid_t *groups) {
    return (int)syscall(SYS_setgroups, (long)count, groups);
}

int ferry_thread_setfsuid(uid_t uid) { return (int)syscall(SYS_setfsuid, (long)uid); }

int ferry_thread_setfsgid(gid_t gid) { return (int)syscall(SYS_setfsgid, (long)gid); }

int ferry_syncfs(int fd) { return syncfs(fd); }

#include <linux/capability.h>

int ferry_thread_get_effective_caps(unsigned int *words) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    words[0] = data[0].effective;
    words[1] = data[1].effective;
    return 0;
}

int ferry_thread_set_effective_caps(const unsigned int *words) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    data[0].effective = words[0];
    data[1].effective = words[1];
    return (int)syscall(SYS_capset, &header, data);
}

#include <malloc.h>
int ferry_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }

#include <sys/vfs.h>
long ferry_file_system_type(int fd) {
    struct statfs info;
    return fstatfs(fd, &info) == 0 ? (long)info.f_type : -1;
}

#include <fcntl.h>
#include <grp.h>
#include <signal.h>

int ferry_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, (long)pid, 0L);
}

int ferry_access_here(int dirfd, const char *path, int mode, int flags) {
    return (int)syscall(SYS_faccessat2, (long)dirfd, path, (long)mode, (long)flags);
}

pid_t ferry_spawn_fd_as(uid_t uid, gid_t gid, int group_count, const gid_t *groups,
                        int program_fd, char *const *argv, char *const *envp, int output_fd) {
    pid_t pid = fork();
    if (pid != 0) return pid; /* parent, or -1 */
    /* child: only async-signal-safe calls from here on */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Its own process group, so that a time limit kills what it starts too. */
    setpgid(0, 0);
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) dup2(null_fd, 0);
    int out = output_fd >= 0 ? output_fd : null_fd;
    if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
    }
    /* The program's own descriptor becomes fd 3, kept across exec (a script's interpreter
       opens /dev/fd/3); nothing else of the agent's leaks into it: not its listening
       socket, not its files. */
    if (program_fd == 3) {
        if (fcntl(3, F_SETFD, 0) != 0) _exit(126);
    } else if (dup2(program_fd, 3) != 3) {
        _exit(126);
    }
    if (syscall(SYS_close_range, 4L, ~0UL, 0L) != 0) {
        for (int fd = 4; fd < 65536; fd++) close(fd);
    }
    if (uid != (uid_t)-1) {
        if (syscall(SYS_setgroups, (long)group_count, groups) != 0) _exit(126);
        /* raw system calls: glibc's wrappers would try to coordinate threads the child no longer has */
        if (syscall(SYS_setresgid, (long)gid, (long)gid, (long)gid) != 0) _exit(126);
        if (syscall(SYS_setresuid, (long)uid, (long)uid, (long)uid) != 0) _exit(126);
    }
    syscall(SYS_execveat, 3L, "", argv, envp, (long)AT_EMPTY_PATH);
    _exit(127);
}
