/*
 * slow-down: an example Ferry error policy in plain C.
 *
 * When a source keeps failing, hammering it every minimum retry delay helps
 * nobody. On a transient error, this policy asks the agent what it remembers
 * of the failing file's source; after `after_failures` failures in a row it
 * postpones the next try to `delay_sec` seconds. Build it with the header only:
 *
 *     cc -shared -fPIC -O2 -I <dir of ferry_plugin.h> -o libferry-slow-down.so slow_down.c
 */
#include <ferry_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ferry_host *host;
static unsigned after_failures = 3;
static double delay_sec = 900;

static ferry_status slow_create(const ferry_host *h, const ferry_kv *config, size_t count,
                                void **instance, char *error, size_t error_size) {
    if (h->struct_size < FERRY_HOST_V1_1_SIZE) {  /* needs source_health and job_set_retry_delay */
        snprintf(error, error_size, "the agent is older than plugin ABI 1.1");
        return FERRY_UNSUPPORTED;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(config[i].key, "after_failures") == 0) after_failures = (unsigned)atoi(config[i].value);
        else if (strcmp(config[i].key, "delay_sec") == 0) delay_sec = atof(config[i].value);
        else { snprintf(error, error_size, "unknown setting '%s'", config[i].key); return FERRY_INVALID_ARGUMENT; }
    }
    host = h;
    *instance = NULL;
    return FERRY_OK;
}

static ferry_status slow_job_error(void *instance, const ferry_job *job, const ferry_error_info *info,
                                   char *error, size_t error_size) {
    (void)instance; (void)error; (void)error_size;
    if (!info->is_transient || info->file_index < 0) return FERRY_OK;      /* leave it to others */
    const ferry_file *file = host->job_file(job, (uint32_t)info->file_index);
    ferry_source_health health = { .struct_size = sizeof health };
    if (!file || host->source_health(job, host->file_remote_url(file), &health) != FERRY_OK) return FERRY_OK;
    if (health.consecutive_failures < after_failures) return FERRY_OK;
    char line[160];
    snprintf(line, sizeof line, "%u failures in a row from this source: next try in %.0f s",
             health.consecutive_failures, delay_sec);
    host->log(FERRY_LOG_INFO, line);
    return host->job_set_retry_delay(job, delay_sec);                        /* the action: postpone */
}

FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) {
    static const ferry_plugin_descriptor descriptor = {
        .struct_size = sizeof(ferry_plugin_descriptor),
        .abi_version = FERRY_PLUGIN_ABI_VERSION,
        .name = "slow-down",
        .version = "1.0.0",
        .roles = FERRY_ROLE_ERROR_POLICY,
        .flags = FERRY_PLUGIN_WANTS_TRANSIENT_ERRORS,
        .create = slow_create,
        .job_error = slow_job_error,
    };
    return &descriptor;
}
