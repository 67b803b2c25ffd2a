"""Video to 4D (SV4D 2.0, SV4D 1.0) and image to 3D orbit (SV3D_u / SV3D_p): the task's inputs and options, shared
by the CLI and the tab."""
from engine.tasks import Input, Option, Options, TaskSpec

VIDEO_MODELS = ("sv4d2", "sv4d2_8views", "sv4d")
IMAGE_MODELS = ("sv3d_u", "sv3d_p")
MODELS = VIDEO_MODELS + IMAGE_MODELS
REMBG_CHECKPOINT = "rembg_u2net"


def model_checkpoint(options: Options) -> tuple[str, ...]:
    """The checkpoints a run loads: the model the user chose (each model is its own checkpoint); SV4D (1.0) also
    needs SV3D_u, which makes its reference orbit of the first frame."""
    return ("sv4d", "sv3d_u") if options.model == "sv4d" else (options.model,)


SPEC = TaskSpec(
    name="fourd",
    order=50,
    title="Video to 4D (SV4D 2.0, SV4D) and image to 3D orbit (SV3D)",
    description="A short video of one object -> videos of it from new viewpoints while it moves, an orbit video "
                "around it, and every frame as PNG (SV4D 2.0 with 4 or 8 views, or SV4D 1.0); or one image of an "
                "object -> a 21-view orbit around it (SV3D_u, or SV3D_p along a camera path you give).",
    checkpoints=(),
    optional_checkpoints=(*MODELS, REMBG_CHECKPOINT),
    option_checkpoints=model_checkpoint,
    inputs=(
        Input("video", "file", "the object's video for the video models (sv4d2, sv4d2_8views, sv4d): an "
              "MP4/WebM/MOV/GIF, or a .zip of frames (PNG/JPEG, named in order; PNGs with transparency keep it). "
              "21 frames are taken from it", required=False),
        Input("image", "image", "the object's picture for the orbit models (sv3d_u, sv3d_p); one with "
              "transparency is used as it is", required=False),
        Input("mask", "file", "optional object mask (white = object): one picture for every frame (or the image), "
              "or a video/GIF/.zip with one mask per input frame; replaces automatic background removal",
              required=False),
        Input("model_config", "file", "optional YAML in the original repository's inference-config format "
              "(model.params.network_config ...) for a checkpoint of other sizes", required=False),
    ),
    options=(
        # seed 23, size 576 (img_size), encode_chunk 8 (encoding_t), decode_chunk 4 (decoding_t): the sample()
        # defaults of scripts/sampling/simple_video_sample_4d2.py and _4d.py@0ad7de9a5cb5 (steps, elevation: below).
        Option("model", "choice", "sv4d2", "video: sv4d2 (4 new views x 12 frames per window), sv4d2_8views (8 new "
               "views x 5 frames per window, slower), sv4d (SV4D 1.0: 8 new views, SV3D_u orbit of frame 0, anchor "
               "frames, then windows of 5; needs sv3d_u too); image: sv3d_u (21-view orbit, no camera control), "
               "sv3d_p (21 views along the elevation/azimuths given)", choices=MODELS),
        # elevation: one value for every view, as the originals. 10: elevations_deg of simple_video_sample.py
        # @0ad7de9a5cb5 (SV3D_p). SV4D 2.0 (its script's default 0) gets cameras relative to the input view, so
        # there it does not change the result (it is recorded in cameras.json); SV3D_u has no camera input.
        Option("elevation", "float", 10.0, "camera elevation in degrees for every view (SV3D_p; SV4D 2.0 sees "
               "cameras relative to the input, so there it only labels cameras.json; SV3D_u ignores it)",
               minimum=-90.0, maximum=90.0, step=1.0),
        Option("elevations", "str", "", "SV3D_p: 21 elevations in degrees, one per view (replaces elevation)",
               advanced=True),
        Option("azimuths", "str", "", "SV3D_p: 21 azimuths in degrees, one per view; the last is the input's own "
               "view (empty: 360/21 apart, ending at 0 = the input view)", advanced=True),
        # watermark: simple_video_sample.py@0ad7de9a5cb5 embeds it into every SV3D frame it writes; the SV4D
        # scripts do not, so it applies to sv3d_u / sv3d_p only.
        Option("watermark", "bool", True, "SV3D: embed Stability's invisible watermark into the views, as the "
               "original script does (recorded in settings.json)", label="Invisible watermark (SV3D)",
               advanced=True),
        # 0: the model's own default, num_steps of the original scripts@0ad7de9a5cb5: 50 (simple_video_sample.py for
        # SV3D, simple_video_sample_4d2.py), 20 (simple_video_sample_4d.py for SV4D)
        Option("steps", "int", 0, "denoising steps (0: the model's default: 50; SV4D 1.0: 20)", minimum=0,
               maximum=500),
        Option.seed(23),
        # remove_bg: the original's --remove_bg flag (off there); on here because most videos have a background.
        Option("remove_bg", "bool", True, "remove the background of frames without transparency (rembg, U2-Net) "
               "before framing the object; off: the background must already be white", label="Remove background"),
        Option("start_frame", "int", -1, "-1: 21 frames spread evenly over the whole clip; N: 21 consecutive "
               "frames from frame N (the original takes the first 21)", minimum=-1, advanced=True),
        Option("size", "int", 576, "working resolution, a multiple of 64 (576 as trained; 512 saves memory)",
               minimum=64, maximum=1024, step=64, advanced=True),
        Option("encode_chunk", "int", 8, "frames the VAE encodes at once (lower saves memory)", minimum=1,
               maximum=64, advanced=True),
        Option("decode_chunk", "int", 4, "frames the VAE decodes at once (lower saves memory)", minimum=1,
               maximum=64, advanced=True),
    ),
)
