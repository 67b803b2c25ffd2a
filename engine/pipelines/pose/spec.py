"""Pose animation (MagicAnimate): the task's inputs and options, shared by the CLI and the tab."""
from engine.pipelines.densepose.spec import EXTRACTION_OPTIONS
from engine.tasks import Input, Option, TaskSpec

SPEC = TaskSpec(
    name="pose",
    splits_windows=True,
    order=10,
    title="Pose animation (MagicAnimate)",
    description="A reference photo of a person + a motion video (a DensePose video, or any video of a person: its "
                "DensePose is extracted first) -> a video of that person doing the motion. Stable Diffusion 1.5 "
                "with MagicAnimate's appearance encoder, DensePose ControlNet and temporal attention.",
    checkpoints=("sd15", "sd_vae_mse", "magicanimate"),
    optional_checkpoints=("densepose",),  # only for a motion video that is not DensePose yet
    inputs=(
        Input("image", "image", "reference photo of the person to animate (fitted to a size x size square)"),
        Input("motion", "video", "motion video: a DensePose video (the fine segmentation rendered with the viridis "
              "colormap, as in MagicAnimate's examples) or any video of a person (its DensePose is extracted "
              "first, see --motion-kind); resampled to --fps and fitted to size x size"),
    ),
    options=(
        # size 512, steps 25, guidance 7.5, seed 1: configs/prompts/animation.yaml@d2bc3bc3c9cc (size, steps,
        # guidance_scale, seed; the same values in demo/gradio_animate.py@d2bc3bc3c9cc); fps 25: save_videos_grid
        # in magicanimate/utils/util.py@d2bc3bc3c9cc; context 16 / overlap 4: context_frames / context_overlap in
        # magicanimate/pipelines/pipeline_animation.py@d2bc3bc3c9cc; context <= 24: temporal_position_encoding_max_len
        # in configs/inference/inference.yaml@d2bc3bc3c9cc.
        Option("size", "int", 512, "side of the square the model works at, a multiple of 64 (MagicAnimate was "
               "trained at 512; smaller is faster and blurrier)", minimum=64, maximum=768, step=64),
        Option("steps", "int", 25, "DDIM denoising steps", minimum=1, maximum=100),
        Option("guidance", "float", 7.5, "classifier-free guidance scale: how strongly the result follows the "
               "reference's appearance (1 turns guidance off and halves the work)", minimum=1.0, maximum=20.0,
               step=0.5),
        Option.seed(1, "random seed (-1: a new random seed, recorded in settings.json); 1 is the original demo's "
                       "default"),
        Option("fps", "int", 25, "the motion video is resampled to this frame rate, and the result plays at it "
               "(MagicAnimate's videos are 25 fps)", minimum=1, maximum=60),
        Option("fit", "choice", "crop", "how the reference and the motion frames become square: crop (centre crop), "
               "pad (letterbox in the border colour) or stretch (the original's plain resize)",
               choices=("crop", "pad", "stretch"), label="Fit to square"),
        Option("motion_kind", "choice", "auto", "what the motion video is: densepose (used as it is), video (an "
               "ordinary video of a person: DensePose is extracted first, then shown as densepose.mp4) or auto "
               "(DensePose colours are used as they are, anything else is extracted)",
               choices=("auto", "densepose", "video"), label="Motion kind"),
        *EXTRACTION_OPTIONS,
        Option("grid", "bool", True, "also write grid.mp4: reference | motion | result side by side (the original "
               "demo's output)", label="Grid video"),
        Option("context", "int", 16, "frames per temporal window (16 as trained, at most 24)", minimum=1, maximum=24,
               advanced=True),
        Option("overlap", "int", 4, "frames shared by neighbouring windows (smaller than context)", minimum=0,
               maximum=23, advanced=True),
    ),
)
