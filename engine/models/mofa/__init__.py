"""The MOFA-Video core on Stable Video Diffusion: the SVD UNet that takes ControlNet residuals, the flow ControlNet,
CMP (sparse trajectories -> dense flow), softmax splatting, the trajectory/flow helpers and diffusers 0.24's temporal
context order. Used by the trajectory task and the talking-face tasks."""
