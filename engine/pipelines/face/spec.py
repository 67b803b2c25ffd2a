"""Talking faces (MOFA-Video Keypoint + Hybrid): the task's inputs and options, shared by the CLI and the tab."""
from engine.models.mofa.options import SVD_OPTIONS
from engine.tasks import Input, Option, TaskSpec

SPEC = TaskSpec(
    name="face",
    splits_windows=True,
    order=30,
    title="Talking faces (MOFA-Video)",
    description="A portrait + a driving face video, speech audio, or a landmarks file -> the portrait performing the "
                "driver's expressions and head motion (or talking, with AniPortrait's speech-to-face renderer), "
                "with the driver's audio. Optional trajectories move what lies outside "
                "the face (hybrid). SVD-XT-1.1 with MOFA-Video's landmark adapter; clips longer than 25 frames (up to "
                "500) by periodic sampling.",
    checkpoints=("svd_xt_11", "mofa_ldmk"),
    # mediapipe_face: the face landmarker, fetched when a driving video is given. mofa_traj: the Trajectories task's
    # adapter and CMP, which hybrid runs (trajectories given) use through that task's pipeline (shared in memory).
    # aniportrait: the speech -> landmarks renderer, fetched when speech audio is given.
    optional_checkpoints=("mediapipe_face", "mofa_traj", "aniportrait"),
    inputs=(
        Input("image", "image", "the portrait to animate (one face; resized so its short side is --size and "
              "centre-cropped to multiples of 64)"),
        Input("driving", "video", "a driving face video: its expressions and head motion are applied to the "
              "portrait's own face (resampled to --fps; its audio is kept). Give this or --landmarks",
              required=False),
        Input("audio", "audio", "speech audio (wav, mp3, flac, ogg, m4a): the portrait talks to it, 25 fps, the audio "
              "muxed in. Give this, --driving or --landmarks", required=False),
        Input("landmarks", "file", "instead of a driving video: a .npy of [N, 68, 2] face landmarks (x, y) in the "
              "portrait's pixels, entry 0 = the portrait's own face (MOFA-Video-Keypoint's format)", required=False),
        Input("trajectories", "json", "optional (hybrid): trajectories that move what lies outside the face mask, "
              "as in the Trajectories task: a list of lists of [x, y] points in the portrait's pixels",
              required=False),
        Input("mask", "image", "optional (hybrid): the landmark mask, same size as the portrait, white where the "
              "face landmarks drive the motion (default: the face region from the landmarks)", required=False),
    ),
    options=(
        # size 512: target_size in MOFA-Video-Hybrid/run_gradio_video_driven.py@3ad3b546da4c; seed 42: its
        # `seed = 42` and the --seed default of MOFA-Video-Keypoint/mofa_keypoint.py@3ad3b546da4c; face_scale 1.0 and
        # drag_scale 0.6: the "Control Scale for Landmark/Trajectory" sliders of run_gradio_video_driven.py; fps 25 and
        # decode_chunk 8: write_video(fps=25) and decode_chunk_size=8 in mofa_keypoint.py; steps 25: the
        # num_inference_steps default of MOFA-Video-Keypoint/pipeline/svdxt_pipeline_ctrlnet_loop.py@3ad3b546da4c.
        Option("steps", "int", 25, "denoising steps", minimum=1, maximum=200),
        Option.seed(42),
        Option("face_scale", "float", 1.0, "landmark control scale: how strongly the face follows the landmarks",
               minimum=0.0, maximum=1.0, step=0.01, label="Face control scale"),
        Option("drag_scale", "float", 0.6, "trajectory control scale (hybrid runs only): how strongly the "
               "trajectories move what lies outside the face mask", minimum=0.0, maximum=1.0, step=0.01,
               label="Trajectory control scale"),
        Option("fps", "int", 25, "the driving video is resampled to this frame rate (one result frame per driving "
               "frame), and the result plays at it", minimum=1, maximum=60),
        # head_pose 0.5 and smoothing 7: `pose_seq_chunk[:, :3] *= 0.5` and `smooth_pose_seq(pose_seq, 7)` in
        # MOFA-Video-Hybrid/aniportrait/audio2ldmk.py@3ad3b546da4c.
        Option("head_pose", "float", 0.5, "speech runs: how much of the predicted head rotation is applied (the "
               "original's 0.5)", minimum=0.0, maximum=1.0, step=0.05, label="Head-pose strength"),
        Option("smoothing", "int", 7, "speech runs: the head pose is averaged over this many frames (1 = off)",
               minimum=1, maximum=25, label="Head-pose smoothing (frames)"),
        Option("still_head", "bool", False, "speech runs: keep the head as in the portrait (only the face moves)",
               label="Still head"),
        *SVD_OPTIONS,
    ),
)
