"""Video to 4D (SV4D 2.0): the task's inputs and options, shared by the CLI and the tab."""
from engine.tasks import Input, Option, Options, TaskSpec

MODELS = ("sv4d2", "sv4d2_8views")
REMBG_CHECKPOINT = "rembg_u2net"


def model_checkpoint(options: Options) -> tuple[str, ...]:
    """The one SV4D checkpoint a run loads: the model the user chose (each model is its own checkpoint)."""
    return (options.model,)


SPEC = TaskSpec(
    name="fourd",
    order=50,
    title="Video to 4D (SV4D 2.0)",
    description="A short video of one object -> videos of it from new viewpoints while it moves, an orbit video "
                "around it, and every frame as PNG. SV4D 2.0 (4 or 8 views).",
    checkpoints=(),
    optional_checkpoints=(*MODELS, REMBG_CHECKPOINT),
    option_checkpoints=model_checkpoint,
    inputs=(
        Input("video", "file", "the object's video: an MP4/WebM/MOV/GIF, or a .zip of frames (PNG/JPEG, named in "
              "order; PNGs with transparency keep it). 21 frames are taken from it"),
        Input("mask", "file", "optional object mask (white = object): one picture for every frame, or a video/GIF/"
              ".zip with one mask per input frame; replaces automatic background removal", required=False),
        Input("model_config", "file", "optional YAML in the original repository's inference-config format "
              "(model.params.network_config ...) for a checkpoint of other sizes", required=False),
    ),
    options=(
        # steps 50, seed 23, size 576 (img_size), encode_chunk 8 (encoding_t), decode_chunk 4 (decoding_t),
        # elevation 0 (elevations_deg): the sample() defaults of scripts/sampling/simple_video_sample_4d2.py@0ad7de9a5cb5.
        Option("model", "choice", "sv4d2", "sv4d2: 4 new views x 12 frames per window; sv4d2_8views: 8 new views x 5 "
               "frames per window (slower)", choices=MODELS),
        # elevation: one value for the input and every new view, as the original; the model gets cameras relative to
        # the input view, so in SV4D 2.0 it does not change the result (it is recorded in cameras.json).
        Option("elevation", "float", 0.0, "camera elevation in degrees, shared by the input and the new views (SV4D "
               "2.0 sees the cameras relative to the input, so this only labels cameras.json)", minimum=-90.0,
               maximum=90.0, step=1.0),
        Option("steps", "int", 50, "denoising steps", minimum=1, maximum=500),
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
