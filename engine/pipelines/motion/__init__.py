"""MOFA-Video shared core: SVD UNet with ControlNet residuals, flow ControlNet, CMP, softsplat, flows."""
