/*
 * Private to the VAE: the layer list both the encoder and the decoder are
 * made of, the causal-conv cache state, and the block functions.
 */
#ifndef TD_VAE_INTERNAL_H
#define TD_VAE_INTERNAL_H

#include "vae.h"

/* Frames of input each causal 3x3x3 conv carries from chunk to chunk. */
#define TD_VAE_CACHE_T 2

typedef struct vae_conv {
    td_tensor w;   /* [Co, Ci, kt, kh, kw] (2-D convs viewed with kt = 1) */
    td_tensor b;   /* [Co] */
} vae_conv;

enum vae_kind { VAE_RES, VAE_ATTN, VAE_UP2D, VAE_UP3D, VAE_DOWN2D, VAE_DOWN3D };

typedef struct vae_layer {
    int kind;
    int64_t cin, cout;
    td_tensor norm1, norm2;  /* RES: the two gammas; ATTN: norm1 */
    vae_conv conv1, conv2;   /* RES: the two causal convs; ATTN: to_qkv, proj;
                              * resamples: conv1 the 2-D conv, conv2 the time conv */
    vae_conv shortcut;       /* RES when cin != cout */
    int has_shortcut;
    int slot;                /* first cache slot (RES: 2, UP3D/DOWN3D: 1) */
} vae_layer;

/* An encoder or a decoder: conv_in, the layers (down or up blocks with the
 * middle block flattened in), head norm + SiLU + conv_out. */
typedef struct vae_net {
    vae_conv conv_in;
    vae_layer *layers;
    int nlayers;
    td_tensor head_norm;
    vae_conv conv_out;
    int nslots;
    int64_t cin, cout;       /* channels in and out of the net */
    int tfactor, sfactor;    /* time and space factor of its resamples */
} vae_net;

struct td_vae {
    td_backend *be;
    td_ctx *ctx;
    const td_weights *weights;
    int has_encoder;
    int64_t base_dim;
    vae_net enc, dec;
    vae_conv quant, post_quant;  /* 1x1x1 convs around the latent */
    float mean[TD_VAE_Z], inv_std[TD_VAE_Z], std[TD_VAE_Z];
};

/* One cache slot per causal conv (and per temporal resample): the last
 * input frames, and whether the slot has seen a chunk yet (Wan's first-
 * chunk rule for temporal resamples). */
typedef struct vae_slot {
    td_tensor frames;        /* [C, TD_VAE_CACHE_T, H, W] storage, or empty */
    int64_t n;               /* frames held */
    int seen;
} vae_slot;

typedef struct vae_state {
    vae_slot *slots;
    int nslots;
} vae_state;

int vae_state_init(td_ctx *ctx, vae_state *st, int nslots);
void vae_state_free(vae_state *st);

/* One chunk through a net: x [cin, T, H, W] -> *y (new, owned by caller). */
int vae_net_chunk(td_vae *vae, const vae_net *net, vae_state *st, const td_tensor *x,
                  td_tensor *y);
/* A plain (non-causal, no cache) conv: *y new. */
int vae_conv_new(td_vae *vae, const td_tensor *x, const vae_conv *c,
                 const td_conv3d_params *p, td_tensor *y);

/* Read the architecture and weights (vae_load.c). */
int vae_build(td_vae *vae);

#endif
