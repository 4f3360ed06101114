/* The turbodiff CLI: one file per subcommand, each an entry point of this shape. */
#ifndef TD_TOOLS_COMMANDS_H
#define TD_TOOLS_COMMANDS_H

typedef struct td_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
} td_command;

int cmd_inspect(int argc, char **argv);
int cmd_op(int argc, char **argv);
int cmd_vae_decode(int argc, char **argv);
int cmd_vae_encode(int argc, char **argv);
int cmd_w8a8(int argc, char **argv);
int cmd_sla_attention(int argc, char **argv);
int cmd_sample_toy(int argc, char **argv);
int cmd_encode_text(int argc, char **argv);
int cmd_dit_forward(int argc, char **argv);
int cmd_t2v(int argc, char **argv);
int cmd_i2v(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_lora_merge(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_prepare_image(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif
