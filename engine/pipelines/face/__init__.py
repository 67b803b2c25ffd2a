"""Talking faces (MOFA-Video Keypoint + Hybrid): a portrait driven by a face video or a landmark sequence."""
