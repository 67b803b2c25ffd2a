"""Trajectory animation (MOFA-Video): the task's inputs and options, shared by the CLI and the tab."""
from engine.models.mofa.options import SVD_OPTIONS
from engine.tasks import Input, Option, TaskSpec

SPEC = TaskSpec(
    name="motion",
    order=20,
    title="Trajectories (MOFA-Video)",
    description="A picture + motion paths drawn on it (+ an optional motion brush) -> a short video in which the "
                "picture moves along the paths. SVD-XT-1.1 with the MOFA-Video trajectory adapter.",
    checkpoints=("svd_xt_11", "mofa_traj"),
    inputs=(
        Input("image", "image", "the picture to animate (resized so its short side is --size, centre-cropped to "
              "multiples of 64)"),
        Input("trajectories", "json", "traj.json: a list of trajectories, each a list of at least two [x, y] points "
              "in the picture's pixels, in drawing order"),
        Input("brush", "image", "optional motion-brush mask, same size as the picture (white = the region that "
              "moves); trajectories starting inside it only move the painted region", required=False),
    ),
    options=(
        # scale 0.6 (Control Scale slider), seed 42, frames 25 (model_length), fps 20 (write_video/mimsave),
        # size 512 (target_size), decode_chunk 8: MOFA-Video-Traj/run_gradio.py@3ad3b546da4c; steps 25: the
        # num_inference_steps default of MOFA-Video-Traj/pipeline/pipeline.py@3ad3b546da4c (the demo does not pass it).
        Option("scale", "float", 0.6, "control scale: how strongly the trajectories steer the video",
               minimum=0.0, maximum=1.0, step=0.01, label="Control scale"),
        Option.seed(42),
        Option("frames", "int", 25, "frames to generate (the model was trained on 25)", minimum=2, maximum=64),
        Option("fps", "int", 20, "frame rate of the result and flow videos", minimum=1, maximum=60),
        Option("steps", "int", 25, "denoising steps", minimum=1, maximum=200),
        *SVD_OPTIONS,
    ),
)
