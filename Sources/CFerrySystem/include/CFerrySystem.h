#ifndef FERRY_CFERRYSYSTEM_H
#define FERRY_CFERRYSYSTEM_H
/*
 * Per-thread credential changes for the engine's file operations.
 *
 * Linux keeps credentials per thread, but glibc's setgroups() changes every
 * thread of the process (it broadcasts the change). The engine must act as a
 * job's owner on its own thread only, so these call the system calls
 * directly: `syscall` is variadic and cannot be called from Swift.
 */
#include <sys/types.h>

/* setgroups(2) for the calling thread only. Returns 0 or -1 with errno set. */
int ferry_thread_setgroups(int count, const gid_t *_Nullable groups);
/* setfsuid(2)/setfsgid(2): return the previous value. */
int ferry_thread_setfsuid(uid_t uid);
int ferry_thread_setfsgid(gid_t gid);

/* The calling thread's effective capability sets (capget(2)/capset(2) on this thread
   only; two 32-bit words). Acting as a job's owner, the engine's thread drops every
   effective capability, not only the filesystem ones setfsuid clears, so that no check
   the kernel makes on capabilities (a driver's CAP_SYS_ADMIN, /proc's CAP_SYS_PTRACE)
   sees root. Return 0 or -1 with errno set. */
int ferry_thread_get_effective_caps(unsigned int *_Nonnull words);
int ferry_thread_set_effective_caps(const unsigned int *_Nonnull words);

/* syncfs(2): flushes the whole file system holding fd (glibc declares it only
   under _GNU_SOURCE). Returns 0 or -1 with errno set. */
int ferry_syncfs(int fd);

/* mallopt(M_ARENA_MAX, count): glibc gives each busy thread its own malloc arena, and a
   process with a dozen worker threads keeps memory in each. Returns 1 on success. */
int ferry_limit_malloc_arenas(int count);

/* The type of the file system holding fd (statfs' f_type, e.g. 0xEF53 for ext4), or -1. */
long ferry_file_system_type(int fd);

#endif

#ifndef FERRY_CFERRYSYSTEM_SPAWN_H
#define FERRY_CFERRYSYSTEM_SPAWN_H
/*
 * Starts the program open at `program_fd` (an O_PATH descriptor the caller opened as
 * the program's user: the path is never looked up again) with `argv`/`envp`, as the
 * given user (groups, gid, then uid), with stdin from /dev/null and stdout/stderr to
 * `output_fd` (or /dev/null when -1). The program sees its own descriptor as fd 3, so
 * that a script's interpreter can open it. Only system calls run between fork and exec,
 * as a threaded process requires. Returns the child's pid, or -1 with errno set.
 * When uid is (uid_t)-1 the child keeps the caller's identity.
 */
pid_t ferry_spawn_fd_as(uid_t uid, gid_t gid, int group_count, const gid_t *_Nullable groups,
                        int program_fd, char *_Nullable const *_Nonnull argv,
                        char *_Nullable const *_Nonnull envp, int output_fd);

/* pidfd_open(2): a descriptor that becomes readable when the process `pid` exits.
   Returns it, or -1 with errno set. */
int ferry_pidfd_open(pid_t pid);

/* faccessat2(2) with the calling thread's filesystem identity (AT_EACCESS): whether
   the file at dirfd/path (path "" with AT_EMPTY_PATH: dirfd itself) allows `mode`
   (W_OK, X_OK, ...). Returns 0 or -1 with errno set. */
int ferry_access_here(int dirfd, const char *_Nonnull path, int mode, int flags);
#endif
