/*
 * ferry_plugin.h — the C ABI between Ferry and its plugins.
 *
 * A plugin is a shared object that exports one function, ferry_plugin_v1(),
 * returning a static descriptor. It needs this header and a C compiler:
 *
 *     cc -shared -fPIC -I<dir of this header> -o libmy-plugin.so my-plugin.c
 *
 * ROLES
 *   Validators implement file_transferred: they read a finished file (or the
 *   digest the host computed while the bytes streamed in) and call
 *   host->file_set_validation_state(). Error policies implement job_error:
 *   they act through the host table (set priority, resume, suspend, point a
 *   file at another URL) or leave the error standing.
 *
 * OWNERSHIP
 *   - Every pointer the host passes (job and file handles, strings, the
 *     configuration, the error info) is borrowed: valid only until the call
 *     that received it returns. Copy what you need to keep.
 *   - Strings returned by host functions are borrowed the same way: valid
 *     until the plugin callback in which they were obtained returns.
 *   - Error text goes into the caller-owned buffer `error` of `error_size`
 *     bytes; the plugin writes a NUL-terminated string and never more than
 *     error_size bytes (snprintf does this).
 *   - What the plugin allocates, the plugin frees (in destroy() at the latest).
 *   - The descriptor and its strings must stay valid until the process ends.
 *
 * THREADS
 *   - create() and destroy() are called once each, on one thread.
 *   - Callbacks for one job are serialized: never two at once for one job.
 *   - Callbacks for different jobs may run at the same time on different
 *     threads, unless the descriptor sets FERRY_PLUGIN_SINGLE_THREADED, in
 *     which case the host never calls the plugin concurrently.
 *   - Host functions may be called only from inside a callback, on the thread
 *     that runs it, with handles received in that callback. Actions (resume,
 *     set priority, ...) take effect after the callback returns.
 *
 * EVOLUTION
 *   - Structs that cross the boundary start with struct_size and only ever
 *     grow at the end. The host reads only the fields a plugin's struct_size
 *     covers; a plugin must check host->struct_size before using a field
 *     added after FERRY_HOST_V1_SIZE.
 *   - An output struct (ferry_progress, ferry_error_info, ferry_source_health)
 *     has its struct_size set by the plugin before the call. The host refuses
 *     a size below the struct's first size (FERRY_*_FIRST_SIZE) with
 *     FERRY_INVALID_ARGUMENT; otherwise it writes min(struct_size, its own
 *     size) bytes and sets struct_size to the number it wrote, so a plugin
 *     built against an older or a newer header gets the fields both know.
 *   - Status codes, roles, flags, states and priorities are append-only; a
 *     value is never reused for another meaning.
 *   - An incompatible change means a new entry symbol (ferry_plugin_v2) and a
 *     new FERRY_PLUGIN_ABI_VERSION; a host may support several.
 */
#ifndef FERRY_PLUGIN_H
#define FERRY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_PLUGIN_ABI_VERSION 1
/* This header's minor version: 0 (1.0), 1 (1.1: retry delay, source health), 2 (1.2: the
   host's minor version, job properties). Minor versions only add at the end of ferry_host.
   A 1.2 host or later reports its own in host->abi_minor; an older one has no such field
   (host->struct_size tells: below FERRY_HOST_V1_2_SIZE it is 1.0 or 1.1). */
#define FERRY_PLUGIN_ABI_MINOR 2
#define FERRY_PLUGIN_ENTRY_SYMBOL "ferry_plugin_v1"

#if defined(__GNUC__)
#define FERRY_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define FERRY_PLUGIN_EXPORT
#endif

/* ---- status codes (append-only) ----------------------------------------- */
typedef int32_t ferry_status;
#define FERRY_OK                0  /* handled */
#define FERRY_RETRY_LATER       1  /* call this callback again later (BITS: a callback not returning S_OK) */
#define FERRY_PENDING           2  /* the file is not complete yet (BITS: E_PENDING) */
#define FERRY_ERROR             3  /* the plugin failed; its error text is logged */
#define FERRY_INVALID_ARGUMENT  4  /* a NULL or out-of-range argument */
#define FERRY_NOT_FOUND         5  /* no such property, digest, file or error */
#define FERRY_INVALID_HANDLE    6  /* a handle used outside the callback that received it */
#define FERRY_UNSUPPORTED       7  /* the host does not offer this */
#define FERRY_INVALID_STATE     8  /* the job's state does not allow the action */

/* ---- roles (bits) --------------------------------------------------------- */
#define FERRY_ROLE_VALIDATOR     (1u << 0)
#define FERRY_ROLE_ERROR_POLICY  (1u << 1)

/* ---- descriptor flags (bits) ---------------------------------------------- */
/* Never call this plugin from two threads at once. */
#define FERRY_PLUGIN_SINGLE_THREADED   (1u << 0)
/* Error policies: also call job_error for transient errors. */
#define FERRY_PLUGIN_WANTS_TRANSIENT_ERRORS (1u << 1)

/* ---- job states and priorities (values fixed forever) --------------------- */
#define FERRY_STATE_SUSPENDED        0
#define FERRY_STATE_QUEUED           1
#define FERRY_STATE_CONNECTING       2
#define FERRY_STATE_TRANSFERRING     3
#define FERRY_STATE_TRANSFERRED      4
#define FERRY_STATE_TRANSIENT_ERROR  5
#define FERRY_STATE_ERROR            6
#define FERRY_STATE_ACKNOWLEDGED     7
#define FERRY_STATE_CANCELLED        8

#define FERRY_PRIORITY_FOREGROUND 0
#define FERRY_PRIORITY_HIGH       1
#define FERRY_PRIORITY_NORMAL     2
#define FERRY_PRIORITY_LOW        3

/* ---- log levels ------------------------------------------------------------ */
#define FERRY_LOG_DEBUG   0
#define FERRY_LOG_INFO    1
#define FERRY_LOG_WARNING 2
#define FERRY_LOG_ERROR   3

/* A size the host does not know (BITS' BG_SIZE_UNKNOWN). */
#define FERRY_SIZE_UNKNOWN UINT64_MAX

/* Opaque handles, valid only during the callback that received them. */
typedef struct ferry_job ferry_job;
typedef struct ferry_file ferry_file;

/* One configuration entry, from the plugin's section of the agent's config. */
typedef struct ferry_kv {
    const char *key;
    const char *value;
} ferry_kv;

/* Progress of a job (BITS' BG_JOB_PROGRESS). */
typedef struct ferry_progress {
    uint32_t struct_size;
    uint32_t files_total;
    uint32_t files_transferred;
    uint32_t reserved;
    uint64_t bytes_total;        /* FERRY_SIZE_UNKNOWN while any size is unknown */
    uint64_t bytes_transferred;
} ferry_progress;

/* A job's error, as passed to job_error and returned by host->job_error. */
typedef struct ferry_error_info {
    uint32_t struct_size;
    int32_t http_status;         /* 0 when none */
    int32_t file_index;          /* -1 when the error concerns no single file */
    int32_t is_transient;        /* 1: TRANSIENT_ERROR, 0: ERROR */
    const char *code;            /* stable code, e.g. "HTTP_ERROR_404", "INSUFFICIENT_RANGE_SUPPORT" */
    const char *context;         /* "remoteFile", "transport", "localFile", "validation", ... */
    const char *description;     /* a sentence for people */
    double retry_after_seconds;  /* the server's Retry-After; < 0 when none */
    uint64_t remote_size;        /* FERRY_SIZE_UNKNOWN when unknown */
} ferry_error_info;

/* What the agent remembers of one source (scheme://host:port), shared by every job and
   kept across restarts. Filled by host->source_health. */
typedef struct ferry_source_health {
    uint32_t struct_size;
    uint32_t consecutive_failures;  /* failures since the last success */
    uint64_t failures;              /* ever */
    uint64_t successes;             /* files that arrived whole (and valid) from it */
    double last_failure;            /* seconds since 1970; < 0 never */
    double last_success;            /* seconds since 1970; < 0 never */
    double bytes_per_second;        /* moving average of finished files; 0 unknown */
} ferry_source_health;

/* The sizes of the output structs when each was introduced: the smallest struct_size the
   host accepts for them. */
#define FERRY_PROGRESS_FIRST_SIZE ((uint32_t)(offsetof(ferry_progress, bytes_transferred) + sizeof(uint64_t)))
#define FERRY_ERROR_INFO_FIRST_SIZE ((uint32_t)(offsetof(ferry_error_info, remote_size) + sizeof(uint64_t)))
#define FERRY_SOURCE_HEALTH_FIRST_SIZE ((uint32_t)(offsetof(ferry_source_health, bytes_per_second) + sizeof(double)))

/* The functions the host offers, passed to create(). Valid until destroy() returns. */
typedef struct ferry_host {
    uint32_t struct_size;
    uint32_t abi_version;

    /* Writes to the agent's log, tagged with the plugin's name. */
    void (*log)(int32_t level, const char *message);

    /* ---- job queries ---- */
    const char *(*job_id)(const ferry_job *job);
    const char *(*job_display_name)(const ferry_job *job);
    uint32_t (*job_owner)(const ferry_job *job);
    int32_t (*job_priority)(const ferry_job *job);                 /* FERRY_PRIORITY_*, -1 on a bad handle */
    int32_t (*job_state)(const ferry_job *job);                    /* FERRY_STATE_*, -1 on a bad handle */
    ferry_status (*job_progress)(const ferry_job *job, ferry_progress *out);   /* set out->struct_size first */
    ferry_status (*job_error)(const ferry_job *job, ferry_error_info *out);    /* FERRY_NOT_FOUND without one */
    uint32_t (*job_file_count)(const ferry_job *job);
    const ferry_file *(*job_file)(const ferry_job *job, uint32_t index);  /* NULL when out of range */

    /* ---- job actions (applied when the callback returns) ---- */
    ferry_status (*job_set_priority)(const ferry_job *job, int32_t priority);
    ferry_status (*job_resume)(const ferry_job *job);
    ferry_status (*job_suspend)(const ferry_job *job);

    /* ---- file queries ---- */
    uint32_t (*file_index)(const ferry_file *file);
    const char *(*file_remote_url)(const ferry_file *file);
    const char *(*file_local_path)(const ferry_file *file);          /* the final name */
    /* A path that opens the file's bytes now. In file_transferred it names the very file
       the host wrote (a /proc/self/fd link to the host's descriptor), so a directory
       renamed or replaced meanwhile cannot make a plugin read another file: open it,
       never derive other names from it. */
    const char *(*file_temporary_path)(const ferry_file *file);
    uint64_t (*file_bytes_total)(const ferry_file *file);            /* FERRY_SIZE_UNKNOWN when unknown */
    uint64_t (*file_bytes_transferred)(const ferry_file *file);
    const char *(*file_property)(const ferry_file *file, const char *key);  /* NULL when absent */
    /* The digest the host computed while the bytes streamed in. algorithm: "sha256" or "sha512".
       Writes the raw bytes into out (out_size ≥ 32 or 64) and their count into *written.
       FERRY_NOT_FOUND when the host did not compute it (then read the temporary yourself). */
    ferry_status (*file_digest)(const ferry_file *file, const char *algorithm, uint8_t *out, size_t out_size, size_t *written);

    /* ---- file actions ---- */
    /* Points the file at another URL (BITS' SetRemoteName); applied when the callback returns. */
    ferry_status (*file_set_remote_url)(const ferry_file *file, const char *url);
    /* IBackgroundCopyFile3::SetValidationState. valid: 1 or 0; reason: a sentence, may be NULL.
       FERRY_PENDING when the file's bytes are not all there yet. */
    ferry_status (*file_set_validation_state)(const ferry_file *file, int32_t valid, const char *reason);

    /* ---- added in 1.1: use only when host->struct_size >= FERRY_HOST_V1_1_SIZE ---- */
    /* The job's minimum retry delay in seconds (BITS' MinimumRetryDelay); -1 on a bad handle. */
    double (*job_minimum_retry_delay)(const ferry_job *job);
    /* For a job in TRANSIENT_ERROR: make the next try wait this many seconds from now.
       It only postpones: the retry is never sooner than the one already due (the job's
       minimum retry delay, or the server's Retry-After). FERRY_INVALID_STATE in other states. */
    ferry_status (*job_set_retry_delay)(const ferry_job *job, double seconds);
    /* What the agent remembers of url's origin (scheme://host:port). Set out->struct_size first.
       FERRY_NOT_FOUND when nothing is known of it yet (or url is not http/https). */
    ferry_status (*source_health)(const ferry_job *job, const char *url, ferry_source_health *out);

    /* ---- added in 1.2: use only when host->struct_size >= FERRY_HOST_V1_2_SIZE ---- */
    /* The host's minor ABI version (its FERRY_PLUGIN_ABI_MINOR). */
    uint32_t abi_minor;
    /* The value of the job's property key (`ferry setproperty`, the API's `properties`);
       NULL when absent or on a bad handle. Valid until the callback returns. */
    const char *(*job_property)(const ferry_job *job, const char *key);
} ferry_host;

/* The size of ferry_host as ABI version 1 defined it. */
#define FERRY_HOST_V1_SIZE ((uint32_t)(offsetof(ferry_host, file_set_validation_state) + sizeof(void *)))
/* The size of ferry_host with the 1.1 additions (retry delay, source health). */
#define FERRY_HOST_V1_1_SIZE ((uint32_t)(offsetof(ferry_host, source_health) + sizeof(void *)))
/* The size of ferry_host with the 1.2 additions (abi_minor, job properties). */
#define FERRY_HOST_V1_2_SIZE ((uint32_t)(offsetof(ferry_host, job_property) + sizeof(void *)))

/* What a plugin is, returned by ferry_plugin_v1(). Static storage; never freed. */
typedef struct ferry_plugin_descriptor {
    uint32_t struct_size;        /* sizeof(ferry_plugin_descriptor) as the plugin was compiled */
    uint32_t abi_version;        /* FERRY_PLUGIN_ABI_VERSION */
    const char *name;            /* short, stable: "sha256" */
    const char *version;         /* the plugin's own version: "1.0.0" */
    uint32_t roles;              /* FERRY_ROLE_* bits */
    uint32_t flags;              /* FERRY_PLUGIN_* bits */

    /* Makes an instance from the plugin's configuration. Returns FERRY_OK and sets *instance
       (may be NULL if the plugin keeps no state), or an error code with text in error. */
    ferry_status (*create)(const ferry_host *host, const ferry_kv *config, size_t config_count,
                           void **instance, char *error, size_t error_size);
    /* Releases the instance. Called once, after the last callback. May be NULL. */
    void (*destroy)(void *instance);

    /* The callbacks of IBackgroundCopyCallback2. Any may be NULL: not implemented. */
    ferry_status (*file_transferred)(void *instance, const ferry_job *job, const ferry_file *file,
                                     char *error, size_t error_size);
    /* Not called by this version of the host (reserved; the agent's event stream and notify
       command tell when a job is transferred). */
    ferry_status (*job_transferred)(void *instance, const ferry_job *job, char *error, size_t error_size);
    ferry_status (*job_error)(void *instance, const ferry_job *job, const ferry_error_info *info,
                              char *error, size_t error_size);
    /* Not called by this version of the host (reserved). */
    ferry_status (*job_modification)(void *instance, const ferry_job *job, char *error, size_t error_size);
} ferry_plugin_descriptor;

/* The size of ferry_plugin_descriptor as ABI version 1 defined it. */
#define FERRY_PLUGIN_DESCRIPTOR_V1_SIZE \
    ((uint32_t)(offsetof(ferry_plugin_descriptor, job_modification) + sizeof(void *)))

/* The one symbol every plugin exports. */
typedef const ferry_plugin_descriptor *(*ferry_plugin_entry_fn)(void);
#if !defined(__swift__)
/* (Not declared for Swift, whose plugins define it with @_cdecl("ferry_plugin_v1").) */
FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void);

/* Writes a C plugin's descriptor (a static named ident) and its entry point. The arguments
   after the flags are the callbacks, as designated initializers; those left out are NULL:

     FERRY_PLUGIN_DEFINE(channel_guard, "channel-guard", "1.0.0", FERRY_ROLE_VALIDATOR, 0,
                         .create = guard_create, .file_transferred = guard_file_transferred)

   struct_size and abi_version are this header's. (Added in 1.2; a plugin that uses it still
   loads in any 1.x host.) */
#define FERRY_PLUGIN_DEFINE(ident, plugin_name, plugin_version, plugin_roles, plugin_flags, ...) \
    static const ferry_plugin_descriptor ident = {                                            \
        .struct_size = sizeof(ferry_plugin_descriptor),                                        \
        .abi_version = FERRY_PLUGIN_ABI_VERSION,                                               \
        .name = plugin_name,                                                                   \
        .version = plugin_version,                                                             \
        .roles = plugin_roles,                                                                 \
        .flags = plugin_flags,                                                                 \
        __VA_ARGS__                                                                            \
    };                                                                                         \
    FERRY_PLUGIN_EXPORT const ferry_plugin_descriptor *ferry_plugin_v1(void) { return &ident; }
#endif

#ifdef __cplusplus
}
#endif
#endif /* FERRY_PLUGIN_H */
