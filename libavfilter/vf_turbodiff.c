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
 * turbodiff_i2v video filter: animate input images into generated clips
 * with libturbodiff (Wan image-to-video, rCM few-step sampling).
 */


#include "libavutil/mathematics.h"
#include "libavutil/opt.h"

#include "avfilter.h"
#include "filters.h"
#include "formats.h"
#include "video.h"
#include "turbodiff_common.h"

typedef struct TurboDiffI2VState {
    int in_eof;
    int submitted;       ///< images handed to the worker
    AVFrame *last;       ///< extend: the latest input frame
} TurboDiffI2VState;

/**
 * The filter's private context: the shared part first, so that the shared
 * option table's offsets hold.
 */
typedef struct TurboDiffI2VContext {
    TurboDiffContext c;
    TurboDiffI2VState st;
} TurboDiffI2VContext;

static const AVOption turbodiff_i2v_options[] = {
    TURBODIFF_COMMON_OPTIONS,
    { "mode", "which input frames become clips", TD_OFFSET(mode), AV_OPT_TYPE_INT, { .i64 = TD_MODE_FIRST }, 0, 2, TD_FLAGS, .unit = "mode" },
        { "first",  "animate the first input frame", 0, AV_OPT_TYPE_CONST, { .i64 = TD_MODE_FIRST }, 0, 0, TD_FLAGS, .unit = "mode" },
        { "each",   "every input frame becomes a clip, clips in sequence", 0, AV_OPT_TYPE_CONST, { .i64 = TD_MODE_EACH }, 0, 0, TD_FLAGS, .unit = "mode" },
        { "extend", "pass the input through, then continue it from its last frame", 0, AV_OPT_TYPE_CONST, { .i64 = TD_MODE_EXTEND }, 0, 0, TD_FLAGS, .unit = "mode" },
    { "adaptive", "keep the input's aspect ratio at the area of size", TD_OFFSET(adaptive), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, TD_FLAGS },
    { NULL }
};

AVFILTER_DEFINE_CLASS(turbodiff_i2v);

static av_cold int init(AVFilterContext *ctx)
{
    return ff_turbodiff_init(ctx);
}

static av_cold void uninit(AVFilterContext *ctx)
{
    TurboDiffI2VContext *s = ctx->priv;

    ff_turbodiff_uninit(ctx);
    av_frame_free(&s->st.last);
}

/**
 * The input is BT.709 limited-range yuv420p, converted to RGB for the
 * library here; the graph converts any other input to it. An RGB input
 * would make FFmpeg keep the output RGB wherever the consumer takes any
 * format (it picks the output format closest to the input's), so that a
 * still image piped to -f yuv4mpegpipe would fail. The output is yuv420p,
 * or rgb24 for RGB consumers, made as the source filter makes them; mode
 * extend passes the input through, so its output is the input's yuv420p.
 */
static int query_formats(const AVFilterContext *ctx,
                         AVFilterFormatsConfig **cfg_in,
                         AVFilterFormatsConfig **cfg_out)
{
    static const enum AVPixelFormat in_fmts[] = { AV_PIX_FMT_YUV420P, AV_PIX_FMT_NONE };
    static const enum AVPixelFormat out_fmts[] = {
        AV_PIX_FMT_YUV420P, AV_PIX_FMT_RGB24, AV_PIX_FMT_NONE
    };
    const TurboDiffContext *s = ctx->priv;
    int ret;

    if ((ret = ff_set_common_color_spaces2(ctx, cfg_in, cfg_out,
                                           ff_make_formats_list_singleton(AVCOL_SPC_BT709))) < 0 ||
        (ret = ff_set_common_color_ranges2(ctx, cfg_in, cfg_out,
                                           ff_make_formats_list_singleton(AVCOL_RANGE_MPEG))) < 0 ||
        (ret = ff_formats_ref(ff_make_format_list(in_fmts), &cfg_in[0]->formats)) < 0)
        return ret;
    return ff_formats_ref(ff_make_format_list(s->mode == TD_MODE_EXTEND ? in_fmts : out_fmts),
                          &cfg_out[0]->formats);
}

static int config_output(AVFilterLink *outlink)
{
    AVFilterContext *ctx = outlink->src;
    AVFilterLink *inlink = ctx->inputs[0];
    AVRational in_rate = ff_filter_link(inlink)->frame_rate;
    TurboDiffContext *s = ctx->priv;
    int ret;

    if ((ret = ff_turbodiff_open(ctx)) < 0)
        return ret;
    s->pix_fmt = outlink->format;
    if (s->mode == TD_MODE_EXTEND) {
        /* The input passes through, so clips must have its size. */
        if (inlink->w % 16 || inlink->h % 16) {
            av_log(ctx, AV_LOG_ERROR, "mode=extend passes the input through, so its size "
                   "%dx%d must be a multiple of 16; scale it first (e.g. scale=%d:%d)\n",
                   inlink->w, inlink->h, FFMAX(16, inlink->w & ~15),
                   FFMAX(16, inlink->h & ~15));
            return AVERROR(EINVAL);
        }
        s->w = inlink->w;
        s->h = inlink->h;
        /* The clip continues the input at the input's rate (a 25 fps input
         * with 16 fps clips would turn variable frame rate). */
        if (in_rate.num > 0 && in_rate.den > 0 && av_cmp_q(in_rate, s->rate)) {
            av_log(ctx, AV_LOG_INFO, "mode=extend: clips follow the input's %d/%d fps\n",
                   in_rate.num, in_rate.den);
            s->rate = in_rate;
        }
    } else if (s->adaptive) {
        /* The library's rule (upstream's), from the input's size: every
         * clip of the stream then has the size the link announces. */
        td_job job = { .width = s->w, .height = s->h, .adaptive_resolution = 1,
                       .image_width = inlink->w, .image_height = inlink->h };
        td_job_output_size(&job, &s->w, &s->h);
        av_log(ctx, AV_LOG_VERBOSE, "adaptive size %dx%d for %dx%d input\n",
               s->w, s->h, inlink->w, inlink->h);
    }
    if ((ret = ff_turbodiff_plan(ctx)) < 0)
        return ret;
    outlink->w = s->w;
    outlink->h = s->h;
    outlink->sample_aspect_ratio = (AVRational){ 1, 1 };
    /* The input's time base if it can hold 1/rate exactly, else a finer
     * one that holds both: generated frames must not collide on pts. */
    outlink->time_base = s->time_base = av_gcd_q(inlink->time_base, av_inv_q(s->rate),
                                                 1 << 24, inlink->time_base);
    ff_filter_link(outlink)->frame_rate = s->rate;
    return 0;
}

/** Hand in (taken, also on failure) to the worker as the RGB image it conditions on. */
static int submit(AVFilterContext *ctx, AVFrame *in)
{
    TurboDiffI2VContext *s = ctx->priv;
    AVFrame *image;
    int ret;

    ret = ff_turbodiff_rgb24_from_yuv420p(&image, in);
    av_frame_free(&in);
    if (ret < 0)
        return ret;
    if (!s->st.submitted) {
        AVRational in_tb = ctx->inputs[0]->time_base;
        /* Generated frames start where the image sits in the input, or, when
         * extending, one frame after the last input frame. */
        s->c.pts_origin = image->pts == AV_NOPTS_VALUE ? 0 :
                          av_rescale_q(image->pts, in_tb, s->c.time_base);
        if (s->c.mode == TD_MODE_EXTEND)
            s->c.pts_origin += image->duration > 0 ?
                               av_rescale_q(image->duration, in_tb, s->c.time_base) :
                               av_rescale_q(1, av_inv_q(s->c.rate), s->c.time_base);
    }
    if ((ret = ff_turbodiff_add_image(ctx, image)) < 0) {
        av_frame_free(&image);
        return ret;
    }
    s->st.submitted++;
    return 0;
}

static int consume_input(AVFilterContext *ctx)
{
    TurboDiffI2VContext *s = ctx->priv;
    AVFilterLink *inlink = ctx->inputs[0], *outlink = ctx->outputs[0];
    AVFrame *in;
    int64_t pts;
    int status, ret;

    if (s->c.mode == TD_MODE_EACH && ff_turbodiff_images_full(ctx))
        return 0;
    if ((ret = ff_inlink_consume_frame(inlink, &in)) < 0)
        return ret;
    if (ret > 0) {
        switch (s->c.mode) {
        case TD_MODE_FIRST:
            if (s->st.submitted) {
                av_frame_free(&in);
                break;
            }
            if ((ret = submit(ctx, in)) < 0)
                return ret;
            /* Only the first frame matters: tell upstream to stop. */
            ff_turbodiff_end_input(ctx);
            ff_inlink_set_status(inlink, AVERROR_EOF);
            s->st.in_eof = 1;
            break;
        case TD_MODE_EACH:
            if ((ret = submit(ctx, in)) < 0)
                return ret;
            /* A filter is not told how long its input is: say what a long
             * one costs as soon as there is a second frame. */
            if (s->st.submitted == 2)
                av_log(ctx, AV_LOG_WARNING, "mode=each: every input frame becomes a clip of %d "
                       "frames (%.2fs), one after the other until the input ends; to animate "
                       "one image set mode=first, or take one frame before this filter "
                       "(trim=end_frame=1)\n",
                       s->c.clip_frames, s->c.clip_frames * av_q2d(av_inv_q(s->c.rate)));
            break;
        case TD_MODE_EXTEND:
            av_frame_free(&s->st.last);
            if (!(s->st.last = av_frame_clone(in))) {
                av_frame_free(&in);
                return AVERROR(ENOMEM);
            }
            if (in->pts != AV_NOPTS_VALUE)
                in->pts = av_rescale_q(in->pts, inlink->time_base, outlink->time_base);
            in->duration = av_rescale_q(in->duration, inlink->time_base, outlink->time_base);
            ret = ff_filter_frame(outlink, in);
            return ret < 0 ? ret : 1;
        }
        ff_filter_set_ready(ctx, 100);
        return 1;
    }
    if (ff_inlink_acknowledge_status(inlink, &status, &pts)) {
        s->st.in_eof = 1;
        if (s->c.mode == TD_MODE_EXTEND && s->st.last) {
            AVFrame *last = s->st.last;
            s->st.last = NULL;
            if ((ret = submit(ctx, last)) < 0)
                return ret;
        }
        if (s->c.mode == TD_MODE_EACH)
            av_log(ctx, AV_LOG_INFO, "mode=each: the input ended after %d frame(s): %d clip(s), "
                   "%"PRId64" frames in all\n", s->st.submitted, s->st.submitted,
                   (int64_t)s->st.submitted * s->c.clip_frames);
        ff_turbodiff_end_input(ctx);
        ff_filter_set_ready(ctx, 100);
        return 1;
    }
    return 0;
}

static int activate(AVFilterContext *ctx)
{
    TurboDiffI2VContext *s = ctx->priv;
    AVFilterLink *inlink = ctx->inputs[0], *outlink = ctx->outputs[0];
    AVFrame *frame;
    int ret;

    /* The consumer closed the output: stop the job and the input. */
    if (ff_outlink_get_status(outlink)) {
        ff_turbodiff_cancel(ctx);
        ff_inlink_set_status(inlink, ff_outlink_get_status(outlink));
        return 0;
    }
    if ((ret = ff_turbodiff_start(ctx)) < 0)
        return ret;

    if (!s->st.in_eof && (ret = consume_input(ctx)))
        return ret < 0 ? ret : 0;

    if (s->st.submitted) {
        ret = ff_turbodiff_next_frame(ctx, &frame);
        if (!ret) {
            frame->pts = s->c.pts_origin + av_rescale_q(s->c.frames_out++, av_inv_q(s->c.rate),
                                                        s->c.time_base);
            frame->duration = av_rescale_q(1, av_inv_q(s->c.rate), s->c.time_base);
            frame->sample_aspect_ratio = (AVRational){ 1, 1 };
            return ff_filter_frame(outlink, frame);
        }
        if (ret == AVERROR_EOF) {
            ff_outlink_set_status(outlink, AVERROR_EOF, s->c.pts_origin +
                                  av_rescale_q(s->c.frames_out, av_inv_q(s->c.rate),
                                               s->c.time_base));
            return 0;
        }
        if (ret != AVERROR(EAGAIN))
            return ret;
        /* Still generating. While the worker can take more images, ask for
         * input and let the caller feed it (marking ourselves ready here
         * would keep the graph looping on us and starve the input). Once
         * the input is done or the worker is saturated, only the worker
         * can make progress: come back after the next timed wait. */
        if (!s->st.in_eof && !ff_turbodiff_images_full(ctx)) {
            ff_inlink_request_frame(inlink);
            return 0;
        }
        ff_filter_set_ready(ctx, 100);
        return 0;
    }
    if (s->st.in_eof) {
        /* The input ended without a single frame to animate. */
        ff_outlink_set_status(outlink, AVERROR_EOF, AV_NOPTS_VALUE);
        return 0;
    }
    FF_FILTER_FORWARD_WANTED(outlink, inlink);
    return FFERROR_NOT_READY;
}

static const AVFilterPad turbodiff_i2v_outputs[] = {
    {
        .name         = "default",
        .type         = AVMEDIA_TYPE_VIDEO,
        .config_props = config_output,
    },
};

const FFFilter ff_vf_turbodiff_i2v = {
    .p.name          = "turbodiff_i2v",
    .p.description   = NULL_IF_CONFIG_SMALL("Animate images into video clips with libturbodiff."),
    .p.priv_class    = &turbodiff_i2v_class,
    .priv_size       = sizeof(TurboDiffI2VContext),
    .init            = init,
    .uninit          = uninit,
    .activate        = activate,
    FILTER_INPUTS(ff_video_default_filterpad),
    FILTER_OUTPUTS(turbodiff_i2v_outputs),
    FILTER_QUERY_FUNC2(query_formats),
    .process_command = ff_turbodiff_process_command,
};
