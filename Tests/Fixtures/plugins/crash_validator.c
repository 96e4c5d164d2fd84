/* A validator for tests that crashes the process (SIGSEGV) on every file it is asked about.
 * With -DCRASH_POLICY it is an error policy that crashes in job_error instead. */
#include <ferry_plugin.h>
#include <stddef.h>

static ferry_status create(const ferry_host *h, const ferry_kv *config, size_t count, void **instance, char *error, size_t size) {
    (void)h; (void)config; (void)count; (void)error; (void)size;
    *instance = NULL;
    return FERRY_OK;
}

/* The pointer itself is volatile, so the compiler cannot see that it is NULL: a real SIGSEGV. */
static int *volatile nowhere;

static void crash(void) {
    *nowhere = 1;
}

#ifdef CRASH_POLICY
static ferry_status job_error(void *instance, const ferry_job *job, const ferry_error_info *info, char *error, size_t size) {
    (void)instance; (void)job; (void)info; (void)error; (void)size;
    crash();
    return FERRY_OK;
}
#else
static ferry_status file_transferred(void *instance, const ferry_job *job, const ferry_file *file, char *error, size_t size) {
    (void)instance; (void)job; (void)file; (void)error; (void)size;
    crash();
    return FERRY_OK;
}
#endif

static const ferry_plugin_descriptor descriptor = {
    .struct_size = sizeof(ferry_plugin_descriptor),
    .abi_version = FERRY_PLUGIN_ABI_VERSION,
#ifdef CRASH_POLICY
    .name = "crash-policy",
    .roles = FERRY_ROLE_ERROR_POLICY,
    .job_error = job_error,
#else
    .name = "crasher",
    .roles = FERRY_ROLE_VALIDATOR,
    .file_transferred = file_transferred,
#endif
    .version = "1.0.0",
    .create = create,
};

FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) { return &descriptor; }
