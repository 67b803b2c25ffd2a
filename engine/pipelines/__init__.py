"""One package per task; each holds its networks, its pipeline class and its tiny-checkpoint writer."""
