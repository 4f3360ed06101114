/*
 * Which files make up a model set: from explicit paths, a turbodiff.json
 * manifest, or the file names the upstream releases use (DESIGN.md's table).
 * Names only locate files here; what a file holds is read from its tensor
 * shapes when it is loaded.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"

enum { F_DIT, F_DIT_LOW, F_VAE, F_T5, F_TOKENIZER, F_COUNT };

static const char *const file_key[F_COUNT] = { "dit", "dit_low", "vae", "t5", "tokenizer" };

/* Upstream names, "subdir/pattern" relative to the model directory, in order
 * of preference. NULL ends each list. */
static const char *const known_names[F_COUNT][16] = {
    [F_DIT] = { "TurboWan2.1-T2V-*.pth", "TurboWan2.2-I2V-A14B-high-*.pth",
                "wan2.1_t2v_*.safetensors", "wan2.1_i2v_*.safetensors",
                "wan2.2_i2v_high_noise_*.safetensors", "wan2.2_t2v_high_noise_*.safetensors",
                "wan2.2_ti2v_5B_*.safetensors",
                "high_noise_model/diffusion_pytorch_model.safetensors",
                "high_noise_model/diffusion_pytorch_model.safetensors.index.json",
                "diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.safetensors.index.json",
                "transformer/diffusion_pytorch_model.safetensors",
                "transformer/diffusion_pytorch_model.safetensors.index.json", NULL },
    [F_DIT_LOW] = { "TurboWan2.2-I2V-A14B-low-*.pth", "wan2.2_i2v_low_noise_*.safetensors",
                    "wan2.2_t2v_low_noise_*.safetensors",
                    "low_noise_model/diffusion_pytorch_model.safetensors",
                    "low_noise_model/diffusion_pytorch_model.safetensors.index.json",
                    "transformer_2/diffusion_pytorch_model.safetensors",
                    "transformer_2/diffusion_pytorch_model.safetensors.index.json", NULL },
    [F_VAE] = { "Wan2.1_VAE.pth", "wan_2.1_vae.safetensors", "Wan2.2_VAE.pth", "wan2.2_vae.safetensors",
                "vae/diffusion_pytorch_model.safetensors", NULL },
    [F_T5] = { "models_t5_umt5-xxl-enc-bf16.pth", "umt5_xxl_fp16.safetensors",
               "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoder/model.safetensors",
               "text_encoder/model.safetensors.index.json", NULL },
    [F_TOKENIZER] = { "google/umt5-xxl/spiece.model", "google/umt5-xxl/tokenizer.json",
                      "tokenizer/spiece.model", "tokenizer/tokenizer.json",
                      "spiece.model", "tokenizer.json", NULL },
};

static char **slot(td_model_files *f, int i)
{
    char **s[F_COUNT] = { &f->dit, &f->dit_low, &f->vae, &f->t5, &f->tokenizer };
    return s[i];
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Every entry of dir/<sub> matching the pattern part of "sub/pattern",
 * sorted so that the choice never depends on readdir order. */
static int match_name(const char *dir, const char *spec, char ***out, int *n)
{
    char sub[PATH_MAX];
    const char *pat = strrchr(spec, '/');
    struct dirent *de;
    DIR *d;

    if (pat) {
        snprintf(sub, sizeof(sub), "%s/%.*s", dir, (int)(pat - spec), spec);
        pat++;
    } else {
        snprintf(sub, sizeof(sub), "%s", dir);
        pat = spec;
    }
    if (!(d = opendir(sub)))
        return 0;
    while ((de = readdir(d))) {
        char **grown;
        if (fnmatch(pat, de->d_name, 0))
            continue;
        grown = realloc(*out, (*n + 1) * sizeof(**out));
        if (!grown || !(grown[*n] = join(sub, de->d_name))) {
            if (grown)
                *out = grown;
            closedir(d);
            return TD_ENOMEM;
        }
        *out = grown;
        (*n)++;
    }
    closedir(d);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* Find component i in dir. The DiT must be unambiguous (a directory holding
 * both the bf16 and the -quant checkpoint must say which one it means);
 * for the other components the first name in preference order wins. */
static int scan_component(td_ctx *ctx, const char *dir, int i, char **found)
{
    for (int k = 0; known_names[i][k]; k++) {
        char **list = NULL;
        int n = 0, ret = match_name(dir, known_names[i][k], &list, &n);
        if (ret < 0) {
            free_list(list, n);
            return td_fail(ctx, ret, "model directory '%s': out of memory", dir);
        }
        if (!n)
            continue;
        qsort(list, n, sizeof(*list), cmp_str);
        if (n > 1 && (i == F_DIT || i == F_DIT_LOW)) {
            ret = td_fail(ctx, TD_EINVAL, "model directory '%s' holds %d %s files (%s, %s%s); "
                          "choose one with the %s option", dir, n, file_key[i], list[0], list[1],
                          n > 2 ? ", ..." : "", file_key[i]);
            free_list(list, n);
            return ret;
        }
        *found = list[0];
        list[0] = NULL;
        free_list(list, n);
        return 0;
    }
    return 0;
}

/* "size": "WxH" and "frames": N, the clip a model was made for. */
static int read_native_clip(td_ctx *ctx, const char *path, const char *key, json_t *val,
                            td_model_files *f)
{
    char tail;
    if (!strcmp(key, "size")) {
        if (!json_is_string(val) || sscanf(json_string_value(val), "%dx%d%c", &f->width,
                                           &f->height, &tail) != 2 ||
            f->width < 16 || f->height < 16 || f->width % 16 || f->height % 16)
            return td_fail(ctx, TD_EFORMAT, "%s: \"size\" must be \"WxH\", multiples of 16", path);
        return 0;
    }
    if (!json_is_integer(val) || json_integer_value(val) < 1 || json_integer_value(val) > 4096)
        return td_fail(ctx, TD_EFORMAT, "%s: \"frames\" must be a number from 1 to 4096", path);
    f->frames = (int)json_integer_value(val);
    return 0;
}

static int add_lora(td_ctx *ctx, td_model_files *f, const char *dir, const char *path, double scale)
{
    td_lora *grown = realloc(f->loras, (size_t)(f->n_loras + 1) * sizeof(*grown));
    char *p;
    if (!grown)
        return td_fail(ctx, TD_ENOMEM, "out of memory for the LoRA list");
    f->loras = grown;
    p = !dir || path[0] == '/' ? strdup(path) : join(dir, path);
    if (!p)
        return td_fail(ctx, TD_ENOMEM, "out of memory for the LoRA list");
    f->loras[f->n_loras].path = p;
    f->loras[f->n_loras].scale = scale;
    f->n_loras++;
    return 0;
}

/* One entry of "lora": "FILE" (scale 1) or {"file": "FILE", "scale": S}. */
static int read_lora_entry(td_ctx *ctx, const char *dir, const char *path, json_t *e, td_model_files *f)
{
    json_t *file, *scale;
    if (json_is_string(e))
        return add_lora(ctx, f, dir, json_string_value(e), 1.0);
    file = json_is_object(e) ? json_object_get(e, "file") : NULL;
    scale = json_is_object(e) ? json_object_get(e, "scale") : NULL;
    if (!json_is_string(file) || (scale && !json_is_number(scale)) ||
        json_object_size(e) != 1u + (scale != NULL))
        return td_fail(ctx, TD_EFORMAT, "%s: each \"lora\" entry must be a file name or "
                       "{\"file\": NAME, \"scale\": NUMBER}", path);
    return add_lora(ctx, f, dir, json_string_value(file), scale ? json_number_value(scale) : 1.0);
}

/* "lora": one entry or a list of them, merged in that order. */
static int read_loras(td_ctx *ctx, const char *dir, const char *path, json_t *val, td_model_files *f)
{
    size_t i;
    json_t *e;
    if (!json_is_array(val))
        return read_lora_entry(ctx, dir, path, val, f);
    json_array_foreach(val, i, e)
        TD_TRY(read_lora_entry(ctx, dir, path, e, f));
    return 0;
}

/* "sampler": the one the checkpoint was made for, as AUTO picks it. */
static int read_sampler(td_ctx *ctx, const char *path, json_t *val, td_model_files *f)
{
    static const char *const names[] = { [TD_SAMPLER_RCM] = "rcm", [TD_SAMPLER_FLOW] = "flow",
                                         [TD_SAMPLER_DMD] = "dmd" };
    for (int i = TD_SAMPLER_RCM; json_is_string(val) && i <= TD_SAMPLER_DMD; i++)
        if (!strcmp(json_string_value(val), names[i])) {
            f->sampler = i;
            return 0;
        }
    return td_fail(ctx, TD_EFORMAT, "%s: \"sampler\" must be \"rcm\", \"flow\" or \"dmd\"", path);
}

/*
 * A diffusers directory names its pipeline in model_index.json's
 * "_class_name". FastVideo's FastWan checkpoints (FastWan2.1-T2V-1.3B-
 * Diffusers, FastWan2.2-TI2V-5B-FullAttn-Diffusers) name WanDMDPipeline,
 * which is how FastVideo itself routes them to its DMD stage (fastvideo/
 * registry.py: the FastWan detector matches "wandmdpipeline"; fastvideo/
 * pipelines/basic/wan/wan_dmd_pipeline.py). Other pipelines leave the
 * choice to the DiT's shapes.
 */
static int read_model_index(td_ctx *ctx, const char *path, td_model_files *f)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr), *name;
    int ret = 0;

    if (!root)
        return td_fail(ctx, TD_EFORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
    name = json_is_object(root) ? json_object_get(root, "_class_name") : NULL;
    if (!json_is_string(name))
        ret = td_fail(ctx, TD_EFORMAT, "%s: expected a JSON object with a \"_class_name\" string "
                      "(a diffusers model_index.json)", path);
    else if (!strcmp(json_string_value(name), "WanDMDPipeline"))
        f->sampler = TD_SAMPLER_DMD;
    json_decref(root);
    return ret;
}

static int read_manifest(td_ctx *ctx, const char *dir, const char *path, td_model_files *f)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr), *val;
    const char *key;
    int ret = 0;

    if (!root)
        return td_fail(ctx, TD_EFORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return td_fail(ctx, TD_EFORMAT, "%s: expected a JSON object", path);
    }
    json_object_foreach(root, key, val) {
        int i;
        if (!strcmp(key, "name") || !strcmp(key, "description")) {
            char **text = key[0] == 'n' ? &f->name : &f->description;
            if (!json_is_string(val)) {
                ret = td_fail(ctx, TD_EFORMAT, "%s: \"%s\" must be a string", path, key);
                break;
            }
            free(*text);
            if (!(*text = strdup(json_string_value(val)))) {
                ret = td_fail(ctx, TD_ENOMEM, "%s: out of memory", path);
                break;
            }
            continue;
        }
        if (!strcmp(key, "lora")) {
            if ((ret = read_loras(ctx, dir, path, val, f)) < 0)
                break;
            continue;
        }
        if (!strcmp(key, "sampler")) {
            if ((ret = read_sampler(ctx, path, val, f)) < 0)
                break;
            continue;
        }
        if (!strcmp(key, "size") || !strcmp(key, "frames")) {
            if ((ret = read_native_clip(ctx, path, key, val, f)) < 0)
                break;
            continue;
        }
        for (i = 0; i < F_COUNT && strcmp(key, file_key[i]); i++)
            ;
        if (i == F_COUNT) {
            ret = td_fail(ctx, TD_EFORMAT, "%s: unknown key \"%s\" (expected name, description, "
                          "dit, dit_low, vae, t5, tokenizer, lora, size, frames, sampler)", path, key);
            break;
        }
        if (!json_is_string(val)) {
            ret = td_fail(ctx, TD_EFORMAT, "%s: \"%s\" must be a file name string", path, key);
            break;
        }
        free(*slot(f, i));
        *slot(f, i) = json_string_value(val)[0] == '/' ? strdup(json_string_value(val))
                                                        : join(dir, json_string_value(val));
        if (!*slot(f, i)) {
            ret = td_fail(ctx, TD_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    json_decref(root);
    return ret;
}

/* A component the user named is not searched for, so a directory holding
 * two DiT checkpoints is not ambiguous once dit names one. */
static int from_dir(td_ctx *ctx, const char *dir, const char *const *explicit_path,
                    td_model_files *f)
{
    struct stat st;
    char *manifest;
    int ret = 0;

    if (stat(dir, &st))
        return td_fail(ctx, TD_ENOTFOUND, "model directory '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return td_fail(ctx, TD_EINVAL, "model directory '%s' is not a directory", dir);

    if (!(manifest = join(dir, "turbodiff.json")))
        return td_fail(ctx, TD_ENOMEM, "out of memory");
    if (!access(manifest, F_OK))
        ret = read_manifest(ctx, dir, manifest, f);
    else
        for (int i = 0; i < F_COUNT && !ret; i++)
            if (!(explicit_path[i] && *explicit_path[i]))
                ret = scan_component(ctx, dir, i, slot(f, i));
    free(manifest);
    if (!ret && !f->sampler) {
        char *index = join(dir, "model_index.json");
        if (!index)
            return td_fail(ctx, TD_ENOMEM, "out of memory");
        if (!access(index, F_OK))
            ret = read_model_index(ctx, index, f);
        free(index);
    }
    return ret;
}

static void names_of(int i, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; known_names[i][k] && len + 1 < size; k++)
        len += snprintf(buf + len, size - len, "%s%s", k ? ", " : "", known_names[i][k]);
}

/* The model a user gets without naming one: $TURBODIFF_MODEL_DIR if set,
 * else the installed default, else this source tree's (uninstalled use). */
static const char *default_model_dir(td_ctx *ctx)
{
    static const char *const places[] = { TD_INSTALLED_MODEL, TD_SOURCE_MODEL };
    const char *env = getenv("TURBODIFF_MODEL_DIR");

    struct stat st;

    if (env && *env) {
        if (!stat(env, &st) && S_ISDIR(st.st_mode))
            return env;
        td_fail(ctx, TD_EINVAL, "no model: give a model directory (model) or the files (dit, "
                "vae, t5); the default, TURBODIFF_MODEL_DIR='%s', is not a directory", env);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
        char manifest[PATH_MAX];
        snprintf(manifest, sizeof(manifest), "%s/turbodiff.json", places[i]);
        if (!access(manifest, R_OK))
            return places[i];
    }
    td_fail(ctx, TD_EINVAL, "no model: give a model directory (model) or the files (dit, "
                   "vae, t5); the default model is not installed (looked in %s and %s)",
                   places[0], places[1]);
    return NULL;
}

/* *s replaced by its realpath, which must be a readable regular file. */
static int canonicalize(td_ctx *ctx, const char *what, char **s)
{
    struct stat st;
    char *canon = realpath(*s, NULL);
    if (!canon)
        return td_fail(ctx, errno == ENOMEM ? TD_ENOMEM : TD_ENOTFOUND, "%s file '%s': %s", what, *s,
                       strerror(errno));
    free(*s);
    *s = canon;
    if (access(canon, R_OK))
        return td_fail(ctx, TD_EIO, "%s file '%s': %s", what, canon, strerror(errno));
    if (stat(canon, &st) || !S_ISREG(st.st_mode))
        return td_fail(ctx, TD_EINVAL, "%s file '%s' is not a regular file", what, canon);
    return 0;
}

static void free_loras(td_model_files *f)
{
    for (int i = 0; i < f->n_loras; i++)
        free((char *)f->loras[i].path);
    free(f->loras);
    f->loras = NULL;
    f->n_loras = 0;
}

/* The caller's LoRAs, not the manifest's: paths as given (relative to the
 * working directory, as the other explicit files are). */
static int replace_loras(td_ctx *ctx, const td_engine_config *cfg, td_model_files *f)
{
    free_loras(f);
    if (!cfg->loras || cfg->n_loras < 0)
        return td_fail(ctx, TD_EINVAL, "n_loras is %d but the LoRA list is %s", cfg->n_loras,
                       cfg->loras ? "given" : "NULL");
    for (int i = 0; i < cfg->n_loras; i++) {
        if (!cfg->loras[i].path || !*cfg->loras[i].path)
            return td_fail(ctx, TD_EINVAL, "LoRA %d has no file path", i + 1);
        TD_TRY(add_lora(ctx, f, NULL, cfg->loras[i].path, cfg->loras[i].scale));
    }
    return 0;
}

/* An explicit file: a relative name is looked up in the model directory
 * first (dit=TurboWan2.1-T2V-1.3B-480P-quant.pth beside model=...), then
 * taken as given, relative to the current directory. */
static char *explicit_file(const char *dir, const char *name)
{
    if (dir && name[0] != '/') {
        char *in_dir = join(dir, name);
        if (!in_dir || !access(in_dir, F_OK))
            return in_dir;
        free(in_dir);
    }
    return strdup(name);
}

int td_model_files_resolve(td_ctx *ctx, const td_engine_config *cfg, td_model_files *f)
{
    const char *explicit_path[F_COUNT] = { cfg->dit, cfg->dit_low, cfg->vae, cfg->t5, cfg->tokenizer };
    const char *dir = cfg->model_dir && *cfg->model_dir ? cfg->model_dir : NULL;
    int ret = 0;

    memset(f, 0, sizeof(*f));
    if (!dir && !(cfg->dit && *cfg->dit)) {
        if (!(dir = default_model_dir(ctx)))
            return ctx->err;
        td_log(ctx, TD_LOG_VERBOSE, "no model given: using the default model in %s", dir);
    }
    if (dir && (ret = from_dir(ctx, dir, explicit_path, f)) < 0)
        goto fail;

    for (int i = 0; i < F_COUNT; i++) {
        char **s = slot(f, i);
        if (explicit_path[i] && *explicit_path[i]) {
            free(*s);
            if (!(*s = explicit_file(dir, explicit_path[i]))) {
                ret = td_fail(ctx, TD_ENOMEM, "out of memory");
                goto fail;
            }
        }
        if (!*s) {
            char names[512];
            if (i == F_DIT_LOW || i == F_TOKENIZER)
                continue;  /* optional: no A14B pair; tokenizer inside the t5 file */
            names_of(i, names, sizeof(names));
            if (dir)
                ret = td_fail(ctx, TD_ENOTFOUND, "no %s file: model directory '%s' has none of "
                              "%s; name it with the %s option", file_key[i], dir, names, file_key[i]);
            else
                ret = td_fail(ctx, TD_ENOTFOUND, "no %s file: name it with the %s option, or "
                              "give a model directory holding one of %s", file_key[i], file_key[i],
                              names);
            goto fail;
        }
        if ((ret = canonicalize(ctx, file_key[i], s)) < 0)
            goto fail;
    }
    if (cfg->n_loras != 0 && (ret = replace_loras(ctx, cfg, f)) < 0)
        goto fail;
    for (int i = 0; i < f->n_loras; i++) {
        char *p = (char *)f->loras[i].path;   /* ours: add_lora allocated it */
        ret = canonicalize(ctx, "lora", &p);
        f->loras[i].path = p;
        if (ret < 0)
            goto fail;
    }
    return 0;
fail:
    td_model_files_free(f);
    return ret;
}

void td_model_files_free(td_model_files *f)
{
    for (int i = 0; i < F_COUNT; i++) {
        free(*slot(f, i));
        *slot(f, i) = NULL;
    }
    free_loras(f);
    free(f->name);
    free(f->description);
    f->name = f->description = NULL;
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int td_model_files_equal(const td_model_files *a, const td_model_files *b)
{
    if (!(same(a->dit, b->dit) && same(a->dit_low, b->dit_low) && same(a->vae, b->vae) &&
          same(a->t5, b->t5) && same(a->tokenizer, b->tokenizer) && a->n_loras == b->n_loras &&
          a->sampler == b->sampler))
        return 0;
    for (int i = 0; i < a->n_loras; i++)
        if (!same(a->loras[i].path, b->loras[i].path) || a->loras[i].scale != b->loras[i].scale)
            return 0;
    return 1;
}
