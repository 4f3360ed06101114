/*
 * Private to the VAE: the layer list both the encoder and the decoder are
 * made of, the causal-conv cache state, and the block functions.
 *
 * Every tensor here is backend memory: weights are uploaded once by
 * td_vae_load, activations and caches come from the backend's tensor_new in
 * its activation dtype (freed in any order with tensor_free), and they are
 * only ever touched through backend ops.
 */
#ifndef TD_VAE_INTERNAL_H
#define TD_VAE_INTERNAL_H

#include "vae.h"

/* Frames of input each causal 3x3x3 conv carries from chunk to chunk. */
#define TD_VAE_CACHE_T 2

typedef struct vae_conv {
    td_tensor w;   /* [Co, Ci, kt, kh, kw] (2-D convs viewed with kt = 1), uploaded */
    td_tensor b;   /* [Co], uploaded */
} vae_conv;

enum vae_kind {
    VAE_RES, VAE_ATTN, VAE_UP2D, VAE_UP3D, VAE_DOWN2D, VAE_DOWN3D,
    /* Wan2.2's residual blocks: sub-layers (residual blocks, then at most
     * one resample) plus a parameter-free shortcut from the block's input:
     * DOWNBLOCK adds the input averaged over ft x fs x fs cells and groups
     * of channels (AvgDown3D); UPBLOCK, when it resamples, adds the input
     * with channels duplicated into ft x fs x fs cells (DupUp3D). */
    VAE_DOWNBLOCK, VAE_UPBLOCK,
};

typedef struct vae_layer vae_layer;
struct vae_layer {
    int kind;
    int64_t cin, cout;
    td_tensor norm1, norm2;  /* RES: the two gammas; ATTN: norm1 (uploaded) */
    vae_conv conv1, conv2;   /* RES: the two causal convs; ATTN: to_qkv, proj;
                              * resamples: conv1 the 2-D conv, conv2 the time conv */
    vae_conv shortcut;       /* RES when cin != cout */
    int has_shortcut;
    int slot;                /* first cache slot (RES: 2, UP3D/DOWN3D: 1) */
    /* DOWNBLOCK / UPBLOCK */
    vae_layer *sub;
    int nsub;
    int ft, fs;              /* shortcut cell: time and space factor */
    int has_dup;             /* UPBLOCK: adds the DupUp3D shortcut */
    td_tensor inv_group;     /* DOWNBLOCK: [1] holding 1 / channels averaged */
};

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

/* Latent channels the per-channel statistics are known for: Wan2.1 (16)
 * and Wan2.2 (48). */
#define TD_VAE_ZMAX 48

/* The per-channel latent statistics as scale_shift vectors: decode is
 * z * std + mean; encode is (mu - mean) * inv_std, taken as two exact steps
 * mu * 1 + (-mean), then * inv_std + 0, so it rounds as the subtraction and
 * product it is. */
enum vae_stat { VAE_MEAN, VAE_STD, VAE_ONE, VAE_NEG_MEAN, VAE_INV_STD, VAE_ZERO, VAE_NSTATS };

struct td_vae {
    td_backend *be;
    td_ctx *ctx;
    const td_weights *weights;
    int has_encoder;
    int64_t base_dim;
    int64_t z;               /* latent channels */
    /* Pixel patch folded into channels around the nets (Wan2.2: 2, the nets
     * see 3 * 2 * 2 = 12 channels at half the size; Wan2.1: 1). */
    int64_t patch;
    vae_net enc, dec;
    vae_conv quant, post_quant;  /* 1x1x1 convs around the latent */
    /* Host values the stats are uploaded from: the CPU backend's upload is
     * a view, so they live as long as the model. */
    float stat_host[VAE_NSTATS][TD_VAE_ZMAX];
    td_tensor stat[VAE_NSTATS];  /* uploaded [z] vectors */
};

/* One cache slot per causal conv (and per temporal resample): the last
 * input frames, and whether the slot has seen a chunk yet (Wan's first-
 * chunk rule for temporal resamples). */
typedef struct vae_slot {
    td_tensor frames;        /* [C, TD_VAE_CACHE_T, H, W] backend storage, or empty */
    int64_t n;               /* frames held */
    int seen;
} vae_slot;

typedef struct vae_state {
    vae_slot *slots;
    int nslots;
    int64_t chunks;          /* chunks done (DupUp3D trims the first) */
} vae_state;

/* Inputs (latents, frames) may come in any float dtype and any strides:
 * they are only ever copied into the model's activations. */
static inline int vae_is_float(td_dtype t)
{
    return t == TD_F32 || t == TD_BF16 || t == TD_F16;
}

int td_vae_state_init(td_ctx *ctx, vae_state *st, int nslots);
void td_vae_state_free(td_vae *vae, vae_state *st);

/* A new activation [c, n, h, w] in the backend's dtype, uninitialised;
 * release with td_vae_act_free (any order). */
int td_vae_act_new(td_vae *vae, td_tensor *t, int64_t c, int64_t n, int64_t h, int64_t w);
void td_vae_act_free(td_vae *vae, td_tensor *t);
/* Frames [t0, t0 + n) of src [C, T, H, W] into frames [d0, d0 + n) of dst
 * (same C, H, W; any strides), through the backend's copy. */
int td_vae_copy_frames(td_vae *vae, td_tensor *dst, int64_t d0, const td_tensor *src, int64_t t0,
                    int64_t n);

/* Dimension dim of t (any strides) seen as [n / inner, inner]: a view
 * with one more dim. */
int td_vae_split_dim(td_ctx *ctx, const td_tensor *t, int dim, int64_t inner, td_tensor *out);

/* Pixels [C, n, p*h, p*w] (any strides) <-> the nets' patched channels
 * [C*p*p, n, h, w] (contiguous), channel c*p*p + pw*p + ph as Wan's
 * rearrange "c f (h q) (w r) -> (c r q) f h w"; one backend copy each. */
int td_vae_patchify(td_vae *vae, const td_tensor *x, td_tensor *y);
int td_vae_unpatchify(td_vae *vae, const td_tensor *x, td_tensor *y);

/* One chunk through a net: x [cin, T, H, W] (contiguous activation) -> *y
 * (new, owned by the caller). */
int td_vae_net_chunk(td_vae *vae, const vae_net *net, vae_state *st, const td_tensor *x,
                  td_tensor *y);
/* A plain (non-causal, no cache) conv: *y new. */
int td_vae_conv_new(td_vae *vae, const td_tensor *x, const vae_conv *c,
                 const td_conv3d_params *p, td_tensor *y);

/* Read the architecture and weights (vae_load.c). */
int td_vae_build(td_vae *vae);

#endif
