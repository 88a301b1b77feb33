// Conversions between 8-bit images and the float tensors the models take.
#pragma once
#include "core/tensor.h"
#include "io/image.h"

namespace diffuse::pipeline {

// RGB image -> [1, 3, H, W] in [-1, 1] (alpha dropped, gray expanded).
Tensor image_to_tensor(const io::Image& img);
// [B, 3, H, W] in [-1, 1] -> one RGB image per batch entry (clamped, rounded).
std::vector<io::Image> tensor_to_images(const Tensor& t);
// Mask image -> [1, 1, H, W] in [0, 1] (1 = repaint); any channel count, averaged.
Tensor mask_to_tensor(const io::Image& img);
// Nearest-neighbour resize of an image (masks and inputs of the wrong size are errors
// elsewhere; this serves previews and tests).
io::Image resize_nearest(const io::Image& img, int width, int height);

}  // namespace diffuse::pipeline
