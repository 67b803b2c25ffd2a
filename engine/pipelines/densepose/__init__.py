"""DensePose extraction: detectron2's DensePose R-CNN in plain torch, video -> MagicAnimate's driving video."""
