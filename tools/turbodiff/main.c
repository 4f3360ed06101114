/*
 * turbodiff: command-line front end to libturbodiff. Each subcommand lives
 * in its own cmd_*.c; this file only dispatches. Errors are one line on
 * stderr and a non-zero exit status.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "turbodiff.h"

/* In the order a user needs them: generate first, the stage-level tools
 * next, the debug commands of the parity tier last. */
static const td_command commands[] = {
    { "generate", "text- or image-to-video through the public API (.y4m, PNGs; --json timings)", cmd_generate },
    { "inspect", "list the tensors of a weight file (with --hash, their SHA-256)", cmd_inspect },
    { "quantize", "turn a float DiT checkpoint into TurboDiffusion's W8A8 -quant layout", cmd_quantize },
    { "lora-merge", "merge LoRAs into a float DiT checkpoint (what the engine does at load)", cmd_lora_merge },
    { "tokenize", "umT5 token ids of a text (</s> included)", cmd_tokenize },
    { "encode-text", "umT5-encode token ids into the [512, d_model] DiT context (.npy)", cmd_encode_text },
    { "prepare-image", "the start image as image-to-video sees it (resized, [-1, 1]) as .npy", cmd_prepare_image },
    { "t2v", "text-to-video latents (rCM over the Wan DiT) from a text embedding .npy", cmd_t2v },
    { "i2v", "image-to-video latents (rCM over a Wan2.2 I2V DiT pair) from conditioning .npy", cmd_i2v },
    { "vae-decode", "decode Wan VAE latents (.npy) into frames (.npy or .y4m)", cmd_vae_decode },
    { "vae-encode", "encode frames (.npy) into normalised Wan VAE latents (.npy)", cmd_vae_encode },
    { "dit-forward", "debug: one Wan DiT forward pass on .npy latents and context", cmd_dit_forward },
    { "op", "debug: run one CPU backend op on .npy files (parity tier)", cmd_op },
    { "w8a8", "debug: the CPU W8A8 linear on raw arrays (parity tier)", cmd_w8a8 },
    { "sla-attention", "debug: run the SLA attention op on .npy q, k, v", cmd_sla_attention },
    { "sample-toy", "debug: run a sampler with a toy linear model", cmd_sample_toy },
    { NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: turbodiff COMMAND [OPTIONS]\n\ncommands:\n");
    for (const td_command *c = commands; c->name; c++)
        fprintf(f, "  %-14s %s\n", c->name, c->summary);
    fprintf(f, "\n'turbodiff COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("turbodiff %d.%d.%d\n", TD_VERSION_MAJOR, TD_VERSION_MINOR, TD_VERSION_MICRO);
        return 0;
    }
    for (const td_command *c = commands; c->name; c++)
        if (!strcmp(argv[1], c->name))
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "turbodiff: unknown command '%s' (try 'turbodiff --help')\n", argv[1]);
    return 2;
}
