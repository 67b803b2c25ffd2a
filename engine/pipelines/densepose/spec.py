"""DensePose extraction: any video of a person -> a DensePose video in MagicAnimate's colours (the pose task's motion
input). The extraction options are defined here once; the pose task offers the same ones for its built-in
extraction."""
from engine.tasks import Input, Option, TaskSpec

# size 512 and fps 25: the MagicAnimate authors' advice for driving videos (a centred square at 512, 25 fps;
# magic-animate issue 18); detect_size 800 (and 1333): INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST in
# detectron2/config/defaults.py@02b5c4e295e9; min_score 0.8: --min_score of projects/DensePose/apply_net.py@02b5c4e295e9
EXTRACTION_OPTIONS = (
    Option("framing", "choice", "follow", "how each frame becomes square: follow (one fixed square around everywhere "
           "the person goes in the clip, plus the margin), track (a square of fixed size moving with the person, "
           "its centre averaged over one second: the body stays centred, its travel is lost), centre (centre crop) "
           "or pad (the whole frame on the background colour)", choices=("follow", "track", "centre", "pad")),
    Option("person", "int", 0, "which person when several are found: 0 the largest, 1, 2, ... the first, second... "
           "from the left, -1 everyone (as detectron2's apply_net)", minimum=-1, maximum=20),
    Option("smooth", "int", 0, "temporal smoothing of the part labels: each pixel takes the most frequent label over "
           "2 x this + 1 frames (0: off). Flicker in the DensePose map becomes flicker in the animation; smoothing "
           "trades it for a little lag at fast moves", minimum=0, maximum=6, advanced=True,
           label="Label smoothing"),
    Option("margin", "float", 0.1, "with framing follow or track: room around the person, as a fraction of the "
           "square's content on each side", minimum=0.0, maximum=1.0, step=0.05, advanced=True),
    Option("detect_size", "int", 800, "shortest side each frame is resized to for detection (800, the longest "
           "at most 1333, as the model was tested; smaller is faster and misses small people)", minimum=128,
           maximum=1600, step=32, advanced=True, label="Detection size"),
    Option("min_score", "float", 0.8, "detection score a person needs (apply_net's default 0.8); lower it when "
           "people are missed", minimum=0.05, maximum=0.99, step=0.05, advanced=True, label="Minimum score"),
)

SPEC = TaskSpec(
    name="densepose",
    order=12,
    title="DensePose extraction (DensePose R-CNN)",
    description="A video of a person -> the DensePose video MagicAnimate is driven by: detectron2's DensePose R-CNN "
                "(R_50_FPN_s1x) body-part labels, rendered with the viridis colours of MagicAnimate's examples.",
    checkpoints=("densepose",),
    inputs=(
        Input("video", "video", "a video of a person (any size and frame rate; resampled to --fps)"),
    ),
    options=(
        Option("size", "int", 512, "side of the square DensePose video (MagicAnimate works at 512)", minimum=64,
               maximum=1024, step=64),
        Option("fps", "int", 25, "frame rate of the DensePose video (MagicAnimate's videos are 25 fps)", minimum=1,
               maximum=60),
        *EXTRACTION_OPTIONS,
    ),
)
