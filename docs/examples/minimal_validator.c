/* min-size: a finished file smaller than the `min_bytes` setting (default 1) is invalid,
 * unless its property `allow_small` is "true", in which case the validator abstains.
 *   cc -shared -fPIC -Wall -Werror -I <dir of ferry_plugin.h> -o libferry-min-size.so minimal_validator.c */
#include <ferry_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ferry_host *host;   /* one table for every instance, valid until destroy() */

static ferry_status create(const ferry_host *h, const ferry_kv *config, size_t count,
                           void **instance, char *error, size_t error_size) {
    unsigned long long min = 1, *self;
    for (size_t i = 0; i < count; i++) {
        char *end = NULL;
        if (strcmp(config[i].key, "min_bytes") == 0) min = strtoull(config[i].value, &end, 10);
        if (end == NULL || end == config[i].value || *end != '\0') {
            snprintf(error, error_size, "bad setting %s = '%s' (known: min_bytes)", config[i].key, config[i].value);
            return FERRY_INVALID_ARGUMENT;
        }
    }
    if ((self = malloc(sizeof *self)) == NULL) return FERRY_ERROR;
    *self = min;
    host = h;
    *instance = self;
    return FERRY_OK;
}

static void destroy(void *instance) { free(instance); }

static ferry_status file_transferred(void *instance, const ferry_job *job, const ferry_file *file,
                                     char *error, size_t error_size) {
    (void)job; (void)error; (void)error_size;
    const char *allow = host->file_property(file, "allow_small");      /* borrowed until we return */
    if (allow != NULL && strcmp(allow, "true") == 0) return FERRY_OK;  /* abstain: no verdict */
    unsigned long long min = *(unsigned long long *)instance, size = host->file_bytes_total(file);
    char reason[128];
    snprintf(reason, sizeof reason, "%llu bytes, %s the minimum of %llu", size, size < min ? "below" : "at least", min);
    host->file_set_validation_state(file, size >= min, reason);
    return FERRY_OK;
}

/* The descriptor and the exported ferry_plugin_v1() that returns it. */
FERRY_PLUGIN_DEFINE(descriptor, "min-size", "1.0.0", FERRY_ROLE_VALIDATOR, 0,
                    .create = create, .destroy = destroy, .file_transferred = file_transferred)
