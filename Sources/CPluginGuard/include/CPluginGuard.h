#ifndef FERRY_CPLUGINGUARD_H
#define FERRY_CPLUGINGUARD_H
/*
 * Marks a plugin call's record when the process dies of a signal during it.
 *
 * Before each call into a plugin, the host writes a record file and hands its
 * descriptor to ferry_plugin_guard_enter() (per thread). If a fatal signal
 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP) arrives on that
 * thread before ferry_plugin_guard_leave(), the handler appends
 * "signal <n>\n" to the record with write(2), which is async-signal-safe,
 * and ends the process at once with the signal's default action. Outside a
 * plugin call, the signal goes to the handler that was there before.
 * A record without that line was cut short by something
 * else: SIGKILL, a power cut, a crash on another thread.
 */

/* Installs the handlers once per process (later calls do nothing). Returns 0, or -1 with errno set. */
int ferry_plugin_guard_install(void);
/* The calling thread is about to call a plugin; `record_fd` is its open record. */
void ferry_plugin_guard_enter(int record_fd);
/* The call returned. */
void ferry_plugin_guard_leave(void);

#endif
