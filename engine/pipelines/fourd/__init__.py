"""Video to 4D (SV4D 2.0): clip reading, background removal, framing, the SV4D 2.0 networks and sampler, outputs."""
