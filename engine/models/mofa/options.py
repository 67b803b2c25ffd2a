"""Options every MOFA-Video task on SVD shares (working size, decode chunk, the demo's attention order): one
statement for the trajectory and face specs. Light: imports no torch."""
from engine.tasks import Option

# size 512 (target_size) and decode_chunk 8: MOFA-Video-Traj/run_gradio.py@3ad3b546da4c; diffusers 0.24:
# MOFA-Video-Traj/requirements.txt and MOFA-Video-Keypoint/requirements.txt@3ad3b546da4c.
SVD_OPTIONS = (
    Option("size", "int", 512, "short side of the working resolution, a multiple of 64", minimum=64,
           maximum=1024, step=64, advanced=True),
    Option("decode_chunk", "int", 8, "frames the VAE decodes at once (lower saves memory)", minimum=1,
           maximum=64, advanced=True),
    Option("demo_context_order", "bool", True, "reproduce the published demo exactly: its diffusers 0.24 paired "
           "the image embedding with the wrong half of the CFG batch in temporal attention (off: the corrected "
           "order of diffusers >= 0.27)", advanced=True, label="Original demo attention order"),
)
