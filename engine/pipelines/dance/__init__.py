"""CoNR character-sheet dancing: networks, sheet and pose preprocessing, pipeline, tiny checkpoints, bench."""
