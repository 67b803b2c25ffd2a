"""MagicAnimate (pose animation): reference image + DensePose video -> animated video."""
