"""Character-sheet dancing (CoNR): the task's inputs and options, shared by the CLI and the tab."""
from engine.tasks import Input, Option, TaskSpec

SPEC = TaskSpec(
    name="dance",
    order=40,
    title="Character-sheet dancing (CoNR)",
    description="Anime character sheets + a pose sequence -> a video of the character dancing.",
    checkpoints=("conr",),
    optional_checkpoints=("anime_seg",),
    inputs=(
        Input("sheets", "image", "character-sheet image of one character (PNG with transparency, or any image to cut "
              "out automatically); 1 to 8 views", multiple=True, cli_flag="--sheet"),
        Input("masks", "image", "optional alpha mask per sheet (white = character), same order and size as the sheets",
              required=False, multiple=True, cli_flag="--mask"),
        Input("poses", "file", "pose sequence: a .zip or folder of UDP .npz frames, or an anime dance video / zip of "
              "frames whose poses the parser predicts (default: the built-in example motion)", required=False),
        Input("background_image", "image", "background picture for the video (with --background image)",
              required=False),
    ),
    options=(
        # fps 30: the `ffmpeg -r 30` of README.md@660c4f771390;
        # working_size 256: --dataloader_imgsize default in train.py@660c4f771390
        Option("fps", "int", 30, "frame rate of the result", minimum=1, maximum=60),
        Option("format", "choice", "mp4", "mp4 on the background, webm keeping transparency, or png frames (RGBA)",
               choices=("mp4", "webm", "png")),
        Option("background", "str", "transparent",
               "transparent (black in mp4, as the original), a colour #RRGGBB, or 'image' for --background-image"),
        Option("output_size", "choice", "crop", "crop: paste into the pose frame as the original; fit: resize to "
               "width x height", choices=("crop", "fit")),
        Option("width", "int", 512, "output width for output_size=fit", minimum=64, maximum=2048, step=2,
               advanced=True),
        Option("height", "int", 512, "output height for output_size=fit", minimum=64, maximum=2048, step=2,
               advanced=True),
        Option("frame_start", "int", 0, "first pose frame to render", minimum=0, advanced=True),
        Option("frame_end", "int", -1, "frame after the last one to render (-1: to the end)", minimum=-1,
               advanced=True),
        Option("cutout", "bool", True, "cut out sheets that have no transparency automatically", advanced=True),
        Option("working_size", "int", 256, "resolution the networks run at (CoNR was trained at 256; larger is "
               "slower and not what the published weights saw)", choices=(128, 256, 384, 512), advanced=True),
    ),
)
