"""The MOFA-Video core on Stable Video Diffusion: the SVD UNet that takes ControlNet residuals, the flow (trajectory)
and landmark ControlNets, ForegroundMatting, CMP (sparse hints -> dense flow), softmax splatting, the trajectory and
landmark hint builders, the shared SVD sampling steps and diffusers 0.24's temporal context order. Used by the
trajectory task and the talking-face task."""
