/* The resident memory of a process that does nothing but load and initialise a library astgate
 * depends on: run-proxy.sh prints it next to astgate's idle RSS. Built twice: with -lcurl (the
 * upstream client the proxy issue requires: Debian's libcurl brings ~30 shared libraries) and
 * without (libc only). Prints VmRSS, RssAnon and RssFile in KiB. */
#include <stdio.h>
#include <string.h>
#ifdef WITH_CURL
#include <curl/curl.h>
#endif

int main(void)
{
#ifdef WITH_CURL
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    CURLM *m = curl_multi_init();
    CURL *e = curl_easy_init();
    if (m == NULL || e == NULL)
        return 1;
#endif
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 1;
    char line[256];
    long rss = -1, anon = -1, file = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            sscanf(line + 6, "%ld", &rss);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            sscanf(line + 8, "%ld", &anon);
        else if (strncmp(line, "RssFile:", 8) == 0)
            sscanf(line + 8, "%ld", &file);
    }
    fclose(f);
    printf("%ld %ld %ld\n", rss, anon, file);
#ifdef WITH_CURL
    curl_easy_cleanup(e);
    curl_multi_cleanup(m);
    curl_global_cleanup();
#endif
    return 0;
}
