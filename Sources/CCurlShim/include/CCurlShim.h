#ifndef FERRY_CCURLSHIM_H
#define FERRY_CCURLSHIM_H
/*
 * Typed wrappers around libcurl's variadic entry points.
 *
 * curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt take C varargs,
 * which Swift cannot call. Each wrapper here fixes one argument type so that
 * FerryTransport (the only Swift importer of libcurl) can call them. Callback
 * setters take real function-pointer typedefs so Swift can pass
 * @convention(c) closures.
 */
#include <curl/curl.h>
#include <stddef.h>

CURLcode ferry_curl_setopt_long(CURL *_Nonnull h, CURLoption opt, long v);
CURLcode ferry_curl_setopt_ptr(CURL *_Nonnull h, CURLoption opt, void *_Nullable v);
CURLcode ferry_curl_setopt_string(CURL *_Nonnull h, CURLoption opt, const char *_Nullable v);
CURLcode ferry_curl_setopt_off_t(CURL *_Nonnull h, CURLoption opt, curl_off_t v);
CURLcode ferry_curl_setopt_slist(CURL *_Nonnull h, CURLoption opt, struct curl_slist *_Nullable v);
/* A blob option (CURLOPT_CAINFO_BLOB, ...): libcurl copies the bytes (CURL_BLOB_COPY). */
CURLcode ferry_curl_setopt_blob(CURL *_Nonnull h, CURLoption opt, const void *_Nonnull data, size_t length);

typedef size_t (*ferry_curl_data_cb)(char *_Nullable ptr, size_t size, size_t nmemb, void *_Nullable userdata);

/* CURLOPT_WRITEFUNCTION + CURLOPT_WRITEDATA */
CURLcode ferry_curl_set_write_callback(CURL *_Nonnull h, ferry_curl_data_cb _Nonnull cb, void *_Nullable userdata);
/* CURLOPT_HEADERFUNCTION + CURLOPT_HEADERDATA */
CURLcode ferry_curl_set_header_callback(CURL *_Nonnull h, ferry_curl_data_cb _Nonnull cb, void *_Nullable userdata);

CURLcode ferry_curl_getinfo_long(CURL *_Nonnull h, CURLINFO info, long *_Nonnull out);
CURLcode ferry_curl_getinfo_off_t(CURL *_Nonnull h, CURLINFO info, curl_off_t *_Nonnull out);
/* The returned string is owned by the handle; copy it before the next call. */
CURLcode ferry_curl_getinfo_string(CURL *_Nonnull h, CURLINFO info, const char *_Nullable *_Nonnull out);

CURLMcode ferry_curl_multi_setopt_long(CURLM *_Nonnull m, CURLMoption opt, long v);

/* libcurl's built-in CA directory (CURLOPT_CAPATH default), or NULL when it has none.
   Wrapped because CURLVERSION_NOW is a macro Swift cannot import. */
const char *_Nullable ferry_curl_default_capath(void);

#endif
