"""Rendering of per-pixel clusterings (SPEC.md section 3): label maps upsampled to the image,
a fixed palette with colours consistent across k, overlays on the grey-scale image
(``cv2.addWeighted``), figure grids written as PNG, and :func:`render_masks` end to end.

OpenCV (``pip install opencv-python-headless``) is imported on first use."""
from .figure import figure_grid, label_margins, write_png
from .labels import UPSAMPLE_MODES, upsample_labels
from .masks import (IMAGENET_MEAN, IMAGENET_STD, METHODS, MaskResult, default_encoder, draw_figures,
                    extract_features, image_names, load_images, render_masks, square_image)
from .overlay import grey_rgb, overlay, to_rgb_uint8
from .palette import PALETTE, colourise, consistent_colours, match_colours, palette

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "METHODS", "PALETTE", "UPSAMPLE_MODES", "MaskResult", "colourise",
    "consistent_colours", "default_encoder", "draw_figures", "extract_features", "figure_grid",
    "grey_rgb", "image_names", "label_margins", "load_images", "match_colours", "overlay", "palette", "render_masks",
    "square_image", "to_rgb_uint8", "upsample_labels", "write_png",
]
