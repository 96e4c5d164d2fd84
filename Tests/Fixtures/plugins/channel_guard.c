/*
 * A validator for tests of ABI 1.2: written with FERRY_PLUGIN_DEFINE, it reads the job's
 * property `channel` (job_property) and finds a file valid only when that property equals
 * the `allowed` setting. Its reasons name the host's minor version (abi_minor).
 */
#include <ferry_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ferry_host *host;

static ferry_status guard_create(const ferry_host *h, const ferry_kv *config, size_t count,
                                 void **instance, char *error, size_t error_size) {
    if (h->struct_size < FERRY_HOST_V1_2_SIZE) {
        snprintf(error, error_size, "the agent is older than plugin ABI 1.2");
        return FERRY_UNSUPPORTED;
    }
    const char *allowed = "stable";
    for (size_t i = 0; i < count; i++)
        if (strcmp(config[i].key, "allowed") == 0) allowed = config[i].value;
    char *copy = strdup(allowed);
    if (copy == NULL) return FERRY_ERROR;
    host = h;
    *instance = copy;
    return FERRY_OK;
}

static void guard_destroy(void *instance) { free(instance); }

static ferry_status guard_file_transferred(void *instance, const ferry_job *job, const ferry_file *file,
                                           char *error, size_t error_size) {
    (void)error; (void)error_size;
    const char *channel = host->job_property(job, "channel");
    char reason[160];
    snprintf(reason, sizeof reason, "job channel %s, allowed %s (host ABI 1.%u)",
             channel ? channel : "(none)", (const char *)instance, host->abi_minor);
    host->file_set_validation_state(file, channel != NULL && strcmp(channel, instance) == 0, reason);
    return FERRY_OK;
}

FERRY_PLUGIN_DEFINE(channel_guard, "channel-guard", "1.0.0", FERRY_ROLE_VALIDATOR, 0,
                    .create = guard_create, .destroy = guard_destroy, .file_transferred = guard_file_transferred)
