#include "CPluginGuard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static _Thread_local int guard_fd = -1;
static const int guarded[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP };
#define GUARDED_COUNT (sizeof guarded / sizeof guarded[0])
static struct sigaction previous[GUARDED_COUNT];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int install_error;

static void on_fatal_signal(int number, siginfo_t *info, void *context) {
    int fd = guard_fd;
    if (fd >= 0) {
        char line[32] = "signal ";
        size_t at = 7;
        char digits[12];
        size_t count = 0;
        unsigned value = (unsigned)number;
        do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value && count < sizeof digits);
        while (count) line[at++] = digits[--count];
        line[at++] = '\n';
        ssize_t ignored = write(fd, line, at);
        static const char note[] = "fatal signal in a plugin call; the call is recorded and the process ends\n";
        ignored = write(STDERR_FILENO, note, sizeof note - 1);
        (void)ignored;
        guard_fd = -1;
        /* The fault is the plugin's: end at once with the default action. A runtime's crash
           reporter (which may take long, and whose helper would inherit the agent's sockets)
           has nothing to say about a plugin's code. */
        signal(number, SIG_DFL);
        raise(number);
        return;
    }
    /* Hand the signal on: to the handler that was there before, or to the default action. */
    for (size_t i = 0; i < GUARDED_COUNT; i++) {
        if (guarded[i] != number) continue;
        struct sigaction *old = &previous[i];
        if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
            old->sa_sigaction(number, info, context);
            return;
        }
        if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && old->sa_handler != NULL) {
            old->sa_handler(number);
            return;
        }
        signal(number, SIG_DFL);
        /* Blocked while this handler runs: delivered with the default action as it returns. */
        raise(number);
        return;
    }
}

static void install(void) {
    for (size_t i = 0; i < GUARDED_COUNT; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_fatal_signal;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        if (sigaction(guarded[i], &action, &previous[i]) != 0) install_error = errno;
    }
}

int ferry_plugin_guard_install(void) {
    pthread_once(&once, install);
    if (install_error) { errno = install_error; return -1; }
    return 0;
}

void ferry_plugin_guard_enter(int record_fd) { guard_fd = record_fd; }

void ferry_plugin_guard_leave(void) { guard_fd = -1; }
