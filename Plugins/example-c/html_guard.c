/*
 * html-guard: an example Ferry validator written in plain C.
 *
 * A mirror that fails often answers 200 with an HTML error page instead of
 * the file. This validator reads the first bytes of every finished file and
 * sets it invalid when they look like HTML, unless the file's property
 * `allow_html` is "true". Build it with nothing but the header:
 *
 *     cc -shared -fPIC -O2 -I <dir of ferry_plugin.h> -o libferry-html-guard.so html_guard.c
 */
#include <ferry_plugin.h>
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const ferry_host *host;

static ferry_status guard_create(const ferry_host *h, const ferry_kv *config, size_t count,
                                 void **instance, char *error, size_t error_size) {
    if (h->struct_size < FERRY_HOST_V1_SIZE) {
        snprintf(error, error_size, "host table too old");
        return FERRY_UNSUPPORTED;
    }
    if (count > 0) {
        snprintf(error, error_size, "html-guard takes no settings, got '%s'", config[0].key);
        return FERRY_INVALID_ARGUMENT;
    }
    host = h;
    *instance = NULL;
    return FERRY_OK;
}

static int looks_like_html(const char *buffer, size_t length) {
    size_t i = 0;
    while (i < length && isspace((unsigned char)buffer[i])) i++;
    return (length - i >= 9 && strncasecmp(buffer + i, "<!doctype", 9) == 0)
        || (length - i >= 5 && strncasecmp(buffer + i, "<html", 5) == 0);
}

static ferry_status guard_file_transferred(void *instance, const ferry_job *job, const ferry_file *file,
                                           char *error, size_t error_size) {
    (void)instance; (void)job;
    const char *allow = host->file_property(file, "allow_html");
    if (allow && strcmp(allow, "true") == 0) return FERRY_OK;           /* abstain */

    const char *path = host->file_temporary_path(file);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        snprintf(error, error_size, "cannot open %s", path ? path : "(no path)");
        return FERRY_ERROR;
    }
    char buffer[256];
    ssize_t got = read(fd, buffer, sizeof buffer);
    close(fd);
    if (got < 0) {
        snprintf(error, error_size, "cannot read %s", path);
        return FERRY_ERROR;
    }
    if (looks_like_html(buffer, (size_t)got)) {
        host->file_set_validation_state(file, 0, "the file is an HTML page, not the expected content");
    } else {
        host->file_set_validation_state(file, 1, "not an HTML page");
    }
    return FERRY_OK;
}

static const ferry_plugin_descriptor descriptor = {
    .struct_size = sizeof(ferry_plugin_descriptor),
    .abi_version = FERRY_PLUGIN_ABI_VERSION,
    .name = "html-guard",
    .version = "1.0.0",
    .roles = FERRY_ROLE_VALIDATOR,
    .flags = 0,
    .create = guard_create,
    .destroy = NULL,
    .file_transferred = guard_file_transferred,
};

FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) { return &descriptor; }
