"""Networks used by more than one task (the SVD UNet, CMP and the flow ControlNet are shared by motion and faces)."""
