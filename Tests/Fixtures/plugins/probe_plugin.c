/*
 * A validator for tests, whose behaviour its settings choose. Built by the
 * tests with `cc` against ferry_plugin.h alone. It writes what it observed to
 * the file named by the `report` setting, one line per event.
 *
 * Settings: mode = valid | invalid | retry | pending | digest | bad-status |
 *                  null-args | stale-handle | fail-create
 *           retries = N (mode retry), report = path
 * Compile-time variants: -DPROBE_ABI_VERSION=N, -DPROBE_NO_ENTRY.
 */
#include <ferry_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PROBE_ABI_VERSION
#define PROBE_ABI_VERSION FERRY_PLUGIN_ABI_VERSION
#endif

typedef struct probe {
    char mode[32];
    char report[1024];
    int retries;
    int calls;
    const ferry_file *kept_file;
} probe;

static const ferry_host *host;

static void report(const probe *p, const char *line) {
    if (!p->report[0]) return;
    FILE *f = fopen(p->report, "a");
    if (!f) return;
    fprintf(f, "%s\n", line);
    fclose(f);
}

static ferry_status probe_create(const ferry_host *h, const ferry_kv *config, size_t count,
                                 void **instance, char *error, size_t error_size) {
    probe *p = calloc(1, sizeof *p);
    if (!p) return FERRY_ERROR;
    strcpy(p->mode, "valid");
    for (size_t i = 0; i < count; i++) {
        if (strcmp(config[i].key, "mode") == 0) snprintf(p->mode, sizeof p->mode, "%s", config[i].value);
        else if (strcmp(config[i].key, "report") == 0) snprintf(p->report, sizeof p->report, "%s", config[i].value);
        else if (strcmp(config[i].key, "retries") == 0) p->retries = atoi(config[i].value);
    }
    if (strcmp(p->mode, "fail-create") == 0) {
        snprintf(error, error_size, "probe refused to start: mode fail-create");
        free(p);
        return FERRY_ERROR;
    }
    host = h;
    *instance = p;
    return FERRY_OK;
}

static void probe_destroy(void *instance) { free(instance); }

static ferry_status probe_file_transferred(void *instance, const ferry_job *job, const ferry_file *file,
                                           char *error, size_t error_size) {
    probe *p = instance;
    char line[1200];
    p->calls++;
    snprintf(line, sizeof line, "call %d file %u", p->calls, host->file_index(file));
    report(p, line);

    if (strcmp(p->mode, "invalid") == 0) {
        host->file_set_validation_state(file, 0, "probe says no");
    } else if (strcmp(p->mode, "retry") == 0) {
        if (p->calls <= p->retries) return FERRY_RETRY_LATER;
        host->file_set_validation_state(file, 1, "probe says yes after retries");
    } else if (strcmp(p->mode, "pending") == 0) {
        uint32_t self = host->file_index(file);
        uint32_t other = self == 0 ? 1 : 0;
        const ferry_file *next = host->job_file(job, other);
        ferry_status status = next ? host->file_set_validation_state(next, 1, "too early") : FERRY_NOT_FOUND;
        snprintf(line, sizeof line, "other file %u status %d", other, status);
        report(p, line);
        host->file_set_validation_state(file, 1, "probe says yes");
    } else if (strcmp(p->mode, "digest") == 0) {
        uint8_t digest[64];
        size_t written = 0;
        ferry_status status = host->file_digest(file, "sha256", digest, sizeof digest, &written);
        char hex[129] = {0};
        for (size_t i = 0; i < written && i < 64; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        snprintf(line, sizeof line, "digest status %d %s", status, hex);
        report(p, line);
        host->file_set_validation_state(file, 1, "probe saw the digest");
    } else if (strcmp(p->mode, "bad-status") == 0) {
        snprintf(error, error_size, "probe returns nonsense");
        return 999;
    } else if (strcmp(p->mode, "null-args") == 0) {
        const char *id = host->job_id(NULL);
        const char *url = host->file_remote_url(NULL);
        const char *property = host->file_property(file, NULL);
        ferry_status set = host->file_set_validation_state(NULL, 1, NULL);
        ferry_status digest = host->file_digest(file, NULL, NULL, 0, NULL);
        const ferry_file *forged = host->job_file(job, 1000000);
        snprintf(line, sizeof line, "null-args id=%s url=%s property=%s set=%d digest=%d forged=%s",
                 id ? "set" : "null", url ? "set" : "null", property ? "set" : "null", set, digest, forged ? "set" : "null");
        report(p, line);
        host->log(FERRY_LOG_WARNING, "probe survived null arguments");
        host->file_set_validation_state(file, 1, NULL);
    } else if (strcmp(p->mode, "stale-handle") == 0) {
        if (p->kept_file) {
            ferry_status status = host->file_set_validation_state(p->kept_file, 1, "stale");
            const char *url = host->file_remote_url(p->kept_file);
            snprintf(line, sizeof line, "stale handle status %d url %s", status, url ? "set" : "null");
            report(p, line);
        }
        p->kept_file = file;
        host->file_set_validation_state(file, 1, "probe says yes");
    } else {
        host->file_set_validation_state(file, 1, "probe says yes");
    }
    return FERRY_OK;
}

static const ferry_plugin_descriptor descriptor = {
    .struct_size = sizeof(ferry_plugin_descriptor),
    .abi_version = PROBE_ABI_VERSION,
    .name = "probe",
    .version = "1.0.0",
    .roles = FERRY_ROLE_VALIDATOR,
    .flags = FERRY_PLUGIN_SINGLE_THREADED,
    .create = probe_create,
    .destroy = probe_destroy,
    .file_transferred = probe_file_transferred,
};

#ifdef PROBE_NO_ENTRY
FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *probe_descriptor(void) { return &descriptor; }
#else
FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) { return &descriptor; }
#endif
