/* An error policy for tests that resumes every job in ERROR, forever.
 * With -DRETRY_FIRST it first answers RETRY_LATER once. */
#include <ferry_plugin.h>
#include <stddef.h>

static const ferry_host *host;

static ferry_status create(const ferry_host *h, const ferry_kv *config, size_t count, void **instance, char *error, size_t size) {
    (void)config; (void)count; (void)error; (void)size;
    host = h;
    *instance = NULL;
    return FERRY_OK;
}

static ferry_status job_error(void *instance, const ferry_job *job, const ferry_error_info *info, char *error, size_t size) {
    (void)instance; (void)info; (void)error; (void)size;
#ifdef RETRY_FIRST
    static int calls;
    if (calls++ == 0) return FERRY_RETRY_LATER;
#endif
    return host->job_resume(job);
}

static const ferry_plugin_descriptor descriptor = {
    .struct_size = sizeof(ferry_plugin_descriptor),
    .abi_version = FERRY_PLUGIN_ABI_VERSION,
    .name = "always-resume",
    .version = "1.0.0",
    .roles = FERRY_ROLE_ERROR_POLICY,
    .create = create,
    .job_error = job_error,
};

FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) { return &descriptor; }
