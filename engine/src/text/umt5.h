/*
 * umT5 encoder (the text encoder of Wan 2.1 / TurboDiffusion): token ids ->
 * the [512, d_model] context the DiT cross-attends to.
 *
 * Architecture (read from the tensor shapes, never from a config): token
 * embedding; N pre-norm layers, each with its OWN relative position bias
 * table [32 buckets, heads] (umT5, unlike T5 which shares layer 0's), T5 RMS
 * norm (no mean subtraction, eps 1e-6), self-attention without the
 * 1/sqrt(d) scale, gated-GELU(tanh) feed-forward gelu(wi_0 x) * wi_1 x -> wo;
 * a final RMS norm.
 *
 * Output as Wan consumes it: Wan encodes the 512-padded ids with the padding
 * masked, keeps the real tokens' rows and the DiT pads them back to 512 with
 * zeros. Masked keys get exactly zero attention weight and the position bias
 * depends only on i - j, so the real rows are the same as encoding just the
 * real tokens; that is what td_umt5_encode does (less work, same numbers).
 *
 * Every weight, the token embedding and the position bias tables included,
 * is uploaded to the backend once at load, in the dtype the backend chooses
 * (the CPU keeps the stored dtype, bf16 for the released files, as views
 * over the weight store, which must then outlive the encoder).
 */
#ifndef TD_TEXT_UMT5_H
#define TD_TEXT_UMT5_H

#include "backend/backend.h"
#include "io/weights.h"

/* Rows of the context the DiT reads (Wan's text_len). */
#define TD_UMT5_TEXT_LEN 512
/* T5's bidirectional bucket reach: distances past it share the last bucket. */
#define TD_UMT5_MAX_DISTANCE 128

typedef enum td_umt5_layout {
    TD_UMT5_LAYOUT_WAN = 0,  /* models_t5_umt5-xxl-enc-bf16.pth: blocks.N.attn.q ... */
    TD_UMT5_LAYOUT_HF,       /* transformers / ComfyUI: encoder.block.N.layer.0... */
} td_umt5_layout;

typedef struct td_umt5_dims {
    int64_t vocab, d_model, d_attn, heads, d_ff, buckets;
    int layers;
    td_dtype wdtype;          /* the file's, of layer 0's q */
} td_umt5_dims;

typedef struct td_umt5_layer {
    td_tensor norm1, q, k, v, o, rel_bias;   /* rel_bias [buckets, heads] */
    td_tensor norm2, wi_gate, wi_up, wo;     /* gelu(wi_gate x) * wi_up x -> wo */
} td_umt5_layer;

typedef struct td_umt5 {
    td_umt5_layout layout;
    td_umt5_dims dims;
    td_tensor embed;          /* [vocab, d_model] */
    td_tensor final_norm;
    td_umt5_layer *layers;    /* dims.layers entries */
} td_umt5;

/* Detect the key layout, count the layers, check every shape and upload
 * the weights to be (CPU: views, no copy). */
int td_umt5_load(td_ctx *ctx, td_backend *be, const td_weights *w, td_umt5 **out);
/* Release the weights through be, the backend the encoder was loaded on. */
void td_umt5_free(td_umt5 **m, td_backend *be);

/* The dims a file's shapes give, without building the encoder (what the
 * arena for it must hold is known before any backend exists). */
int td_umt5_read_dims(td_ctx *ctx, const td_weights *w, td_umt5_dims *out);

/* Activation scratch td_umt5_encode takes from the backend arena for n ids
 * with activations of dtype act. */
size_t td_umt5_scratch_bytes(const td_umt5_dims *d, td_dtype act, int n);
/* The largest workspace (backend.h) an op of td_umt5_encode takes on be
 * for n ids, its weights uploaded from the file (the CPU keeps their
 * dtype). */
size_t td_umt5_workspace(const td_umt5_dims *d, td_backend *be, int n);

/* Encode n ids (1 <= n <= 512, each < vocab; the host array is the input
 * edge) with the backend the encoder was loaded on into out, a contiguous
 * [512, d_model] backend tensor in be->act the caller owns: rows 0..n-1 the
 * encoding, the rest zeros. Scratch comes from be's arena and is released
 * before returning. */
int td_umt5_encode(const td_umt5 *m, td_backend *be, const int32_t *ids, int n, td_tensor *out);

/* T5's bidirectional relative position bucket of rel = key - query, with
 * buckets total buckets, exactly as transformers computes it (in f32). */
int td_umt5_bucket(int64_t rel, int64_t buckets, int64_t max_distance);

/* --- key maps (umt5_keys.c) ---------------------------------------------- */
typedef struct td_umt5_keys {
    /* per-layer printf formats taking the layer index */
    const char *norm1, *q, *k, *v, *o, *rel_bias, *norm2, *wi_gate, *wi_up, *wo;
    const char *final_norm;
    const char *embed[2];     /* tried in order; HF may store either alias */
} td_umt5_keys;

/* The layout of w by its names; TD_EFORMAT naming the file when neither. */
int td_umt5_detect_layout(td_ctx *ctx, const td_weights *w, td_umt5_layout *out);
const td_umt5_keys *td_umt5_keys_of(td_umt5_layout layout);

#endif
