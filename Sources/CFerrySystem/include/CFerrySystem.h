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

#endif
