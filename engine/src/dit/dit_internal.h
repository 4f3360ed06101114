/* Shared between the DiT's loader, key maps, tables and forward pass. */
#ifndef TD_DIT_INTERNAL_H
#define TD_DIT_INTERNAL_H

#include "dit.h"
#include "lora.h"

/* Which naming a checkpoint uses. */
typedef enum { TD_DIT_KEYS_WAN = 0, TD_DIT_KEYS_DIFFUSERS = 1 } td_dit_layout;

/* The model's tensors by role; the key map turns one into a name. */
typedef enum {
    DK_PATCH, DK_TEXT0, DK_TEXT2, DK_TIME0, DK_TIME2, DK_TPROJ, DK_HEAD, DK_HEAD_MOD,
    /* per block (name formats take the block index) */
    DK_MOD, DK_NORM3,
    DK_SA_Q, DK_SA_K, DK_SA_V, DK_SA_O, DK_SA_NQ, DK_SA_NK,
    DK_CA_Q, DK_CA_K, DK_CA_V, DK_CA_O, DK_CA_NQ, DK_CA_NK,
    DK_FFN0, DK_FFN2, DK_PROJ_L,
    DK_COUNT
} td_dit_key;

/* The module name of role k in layout l for block b ("blocks.3.self_attn.q"
 * or "patch_embedding"); NULL where the layout has no such module. */
const char *td_dit_key_name(td_dit_layout l, td_dit_key k, int b, char *buf, size_t size);
/* The layout of w, told apart by a tensor only diffusers has. */
td_dit_layout td_dit_detect_layout(const td_weights *w);

/* A Linear, plain (w) or TurboDiffusion W8A8 (wq int8 + ws f32). Every
 * tensor of the model below is an uploaded copy (be->ops->upload). */
typedef struct td_dit_linear {
    td_tensor w, wq, ws, b;
    int quant, has_bias;
} td_dit_linear;

typedef struct td_dit_block {
    td_tensor mod;                       /* [1, 6, dim] */
    td_tensor norm3_w, norm3_b;          /* [dim] */
    td_dit_linear sq, sk, sv, so, cq, ck, cv, co, ffn0, ffn2;
    td_tensor snq, snk, cnq, cnk;        /* RMSNorm weights [dim] */
    td_dit_linear proj_l;                /* [hd, hd], present when has_proj_l */
} td_dit_block;

struct td_dit {
    td_ctx *ctx;
    td_backend *be;                      /* holds the uploaded weights; not owned */
    const td_weights *w;
    td_lora_merged *lora;                /* merged copies the CPU's uploads view; NULL: none */
    td_dit_config cfg;
    td_dit_layout layout;
    td_dit_linear patch;                 /* w viewed as [dim, C_in * pt * ph * pw] */
    td_dit_linear text0, text2, time0, time2, tproj, head;
    td_tensor head_mod;                  /* [1, 2, dim] */
    td_dit_block *blocks;
};

/* Distinct timesteps one forward takes: one, or Wan2.2 TI2V's two (the
 * first latent frame's and the others'). */
#define TD_DIT_MAX_TIMES 2

/* The activations of one forward pass (dit_plan.c), in be->act. */
struct td_dit_plan {
    td_backend *be;
    td_dit_config cfg;                   /* the widths the buffers were sized for */
    int64_t F, H, W, L, S;               /* latent frames, rows, columns; context rows; tokens */
    td_tensor x, n, q, k, v, a, o;       /* [S, dim] */
    td_tensor ff;                        /* [S, max(ffn, C_in np, C_out np)]: also patch / head rows */
    td_tensor ctx_in, ctx, ck, cv;       /* [L, dim] */
    td_tensor cos_t, sin_t;              /* RoPE [S, head_dim / 2], written once */
    /* Per distinct timestep k < TD_DIT_MAX_TIMES, row k of: */
    td_tensor sinus, th, e, e0;          /* [n, freq], [n, dim], [n, dim], [n, 6 dim] */
    td_tensor mod;                       /* [n * 6, dim]: block (and head) modulation, 6 rows per k */
    float *sinus_host;                   /* [n, freq]: the timestep sinusoids before their write */
};

/* A plan fits a model when backend, widths, channels and patch agree. */
int td_dit_plan_fits(const td_dit_plan *p, const td_dit *m);

/* Read dim, layers, widths, channels and patch from shapes (dit_config.c). */
int td_dit_read_config(td_ctx *ctx, const td_weights *w, td_dit_layout l,
                       const td_dit_opts *opts, td_dit_config *cfg);
/* Wan's sinusoidal time embedding in f64: [cos(t f_i), sin(t f_i)],
 * f_i = 10000^(-i / half), written as f32 into emb[freq_dim]. */
void td_dit_time_embedding(double t, int freq_dim, float *emb);
/* 3-D RoPE angle tables cos/sin [S, head_dim / 2] for a (tp, hp, wp) grid. */
void td_dit_rope_tables(int head_dim, int64_t tp, int64_t hp, int64_t wp, float *cos_t, float *sin_t);

#endif
