/*
 * This file is part of FFmpeg.
 *
 * FFmpeg is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 *
 * FFmpeg is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
 * Lesser General Public License for more details.
 *
 * You should have received a copy of the GNU Lesser General Public
 * License along with FFmpeg; if not, write to the Free Software
 * Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 */

/**
 * @file
 * turbodiff video source: generate video from a text prompt with
 * libturbodiff (Wan DiT, rCM few-step sampling, SLA attention).
 */

#include "libavutil/opt.h"

#include "avfilter.h"
#include "filters.h"
#include "formats.h"
#include "video.h"
#include "turbodiff_common.h"

static const AVOption turbodiff_options[] = {
    TURBODIFF_COMMON_OPTIONS,
    { "clips", "number of clips, 0: one per prompt", TD_OFFSET(clips), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, INT_MAX, TD_FLAGS },
    { "loop",  "generate clips until stopped, cycling through the prompts", TD_OFFSET(loop), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, TD_FLAGS },
    { NULL }
};

AVFILTER_DEFINE_CLASS(turbodiff);

static av_cold int init(AVFilterContext *ctx)
{
    return ff_turbodiff_init(ctx);
}

static av_cold void uninit(AVFilterContext *ctx)
{
    ff_turbodiff_uninit(ctx);
}

/**
 * yuv420p first: what encoders and pipes (yuv4mpegpipe) take without
 * -pix_fmt, made in BT.709 limited range from the library's float frames;
 * rgb24 for RGB consumers, as the library rounds it.
 */
static int query_formats(const AVFilterContext *ctx,
                         AVFilterFormatsConfig **cfg_in,
                         AVFilterFormatsConfig **cfg_out)
{
    static const enum AVPixelFormat pix_fmts[] = {
        AV_PIX_FMT_YUV420P, AV_PIX_FMT_RGB24, AV_PIX_FMT_NONE
    };
    int ret;

    if ((ret = ff_set_common_color_spaces2(ctx, cfg_in, cfg_out,
                                           ff_make_formats_list_singleton(AVCOL_SPC_BT709))) < 0 ||
        (ret = ff_set_common_color_ranges2(ctx, cfg_in, cfg_out,
                                           ff_make_formats_list_singleton(AVCOL_RANGE_MPEG))) < 0)
        return ret;
    return ff_set_common_formats_from_list2(ctx, cfg_in, cfg_out, pix_fmts);
}

static int config_props(AVFilterLink *outlink)
{
    AVFilterContext *ctx = outlink->src;
    TurboDiffContext *s = ctx->priv;
    FilterLink *l = ff_filter_link(outlink);
    int ret;

    s->pix_fmt = outlink->format;
    if ((ret = ff_turbodiff_open(ctx)) < 0 ||
        (ret = ff_turbodiff_plan(ctx)) < 0)
        return ret;

    outlink->w = s->w;
    outlink->h = s->h;
    outlink->sample_aspect_ratio = (AVRational){ 1, 1 };
    outlink->time_base = s->time_base = av_inv_q(s->rate);
    l->frame_rate = s->rate;
    return 0;
}

static int activate(AVFilterContext *ctx)
{
    AVFilterLink *outlink = ctx->outputs[0];
    TurboDiffContext *s = ctx->priv;
    AVFrame *frame;
    int ret;

    /* The consumer closed the output (-frames:v, trim, ...): stop the job
     * now rather than when the graph is freed. */
    if (ff_outlink_get_status(outlink)) {
        ff_turbodiff_cancel(ctx);
        return 0;
    }
    if (!ff_outlink_frame_wanted(outlink))
        return FFERROR_NOT_READY;
    if ((ret = ff_turbodiff_start(ctx)) < 0)
        return ret;

    ret = ff_turbodiff_next_frame(ctx, &frame);
    if (ret == AVERROR(EAGAIN)) {
        /* Nothing yet: come back after the next timed wait (see
         * turbodiff_common.h for why this is not a busy loop). */
        ff_filter_set_ready(ctx, 100);
        return 0;
    }
    if (ret == AVERROR_EOF) {
        ff_outlink_set_status(outlink, AVERROR_EOF, s->frames_out);
        return 0;
    }
    if (ret < 0)
        return ret;

    frame->pts = s->frames_out++;
    frame->duration = 1;
    frame->sample_aspect_ratio = (AVRational){ 1, 1 };
    return ff_filter_frame(outlink, frame);
}

static const AVFilterPad turbodiff_outputs[] = {
    {
        .name          = "default",
        .type          = AVMEDIA_TYPE_VIDEO,
        .config_props  = config_props,
    },
};

const FFFilter ff_vsrc_turbodiff = {
    .p.name          = "turbodiff",
    .p.description   = NULL_IF_CONFIG_SMALL("Generate video from a text prompt with libturbodiff."),
    .p.priv_class    = &turbodiff_class,
    .priv_size       = sizeof(TurboDiffContext),
    .init            = init,
    .uninit          = uninit,
    .activate        = activate,
    FILTER_OUTPUTS(turbodiff_outputs),
    FILTER_QUERY_FUNC2(query_formats),
    .process_command = ff_turbodiff_process_command,
};
