/* The model a user gets without naming one, and the clip size a model set
 * declares: TURBODIFF_MODEL_DIR chooses the default (here the committed
 * tiny set, whose manifest says 64x32 x 5 frames); a default that is not
 * there is refused saying so; a manifest's size and frames are checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "turbodiff.h"

static int open_with(const char *env, td_engine **eng, td_error *err)
{
    td_engine_config cfg;
    td_engine_config_default(&cfg);
    setenv("TURBODIFF_MODEL_DIR", env, 1);
    return td_engine_open(&cfg, eng, err);
}

static void manifest_error(const char *json, const char *needle)
{
    char dir[] = "/tmp/td_manifest_XXXXXX", path[64];
    td_engine_config cfg;
    td_engine *eng = NULL;
    td_error err = { 0 };
    FILE *f;

    if (!mkdtemp(dir))
        return;
    snprintf(path, sizeof(path), "%s/turbodiff.json", dir);
    if ((f = fopen(path, "w"))) {
        fputs(json, f);
        fclose(f);
    }
    td_engine_config_default(&cfg);
    cfg.model_dir = dir;
    CHECK(td_engine_open(&cfg, &eng, &err) == TD_EFORMAT && strstr(err.msg, needle),
          "manifest %s is refused naming '%s': %s", json, needle, err.msg);
    td_engine_release(&eng);
    remove(path);
    rmdir(dir);
}

int main(void)
{
    td_engine *eng = NULL;
    td_error err = { 0 };
    int w = 0, h = 0, frames = 0;

    CHECK(open_with(TD_ROOT "/tests/data/pipeline", &eng, &err) == 0, "default model: %s", err.msg);
    CHECK(td_engine_native_clip(eng, &w, &h, &frames) == 1 && w == 64 && h == 32 && frames == 5,
          "the manifest's own clip: %dx%d x %d", w, h, frames);
    td_engine_release(&eng);

    CHECK(open_with("/nonexistent-td-models", &eng, &err) == TD_EINVAL && !eng &&
          strstr(err.msg, "no model") && strstr(err.msg, "TURBODIFF_MODEL_DIR='/nonexistent-td-models'"),
          "a default that is not there: %s", err.msg);
    unsetenv("TURBODIFF_MODEL_DIR");

    manifest_error("{\"dit\": \"d\", \"size\": \"63x32\"}", "\"size\"");
    manifest_error("{\"dit\": \"d\", \"size\": 64}", "\"size\"");
    manifest_error("{\"dit\": \"d\", \"frames\": 0}", "\"frames\"");
    manifest_error("{\"dit\": \"d\", \"fps\": 16}", "unknown key \"fps\"");
    return check_summary();
}
