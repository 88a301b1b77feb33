// The renaming tables of the single-file name maps (internal to src/io), shared by the forward
// maps (name_map_*.cpp) and their inverse (name_map_inverse.cpp) so that the two directions
// read one table each.
#pragma once
#include <span>

#include "io/name_map_ldm.h"
#include "io/name_map_util.h"

namespace diffuse::io::detail {

// name_map_unet.cpp: LDM UNet modules outside the blocks, and ResBlock layers.
std::span<const Rename> unet_top_level_renames();
std::span<const Rename> unet_resnet_renames();

// name_map_vae.cpp: LDM VAE top-level modules, resnet layers, mid-block attention and resnets.
std::span<const Rename> vae_top_level_renames();
std::span<const Rename> vae_resnet_renames();
std::span<const Rename> vae_attention_renames();
std::span<const Rename> vae_mid_renames();

// name_map_clip.cpp: OpenCLIP modules outside the residual blocks and inside one, and the
// canonical names of in_proj's row blocks (q, k, v).
std::span<const Rename> open_clip_top_renames();
std::span<const Rename> open_clip_block_renames();
std::span<const std::string_view> open_clip_qkv_names();

// name_map_ldm.cpp: blocks of OpenCLIP's text tower that Stable Diffusion does not use, and the
// single-file prefix of a component's names ("model.diffusion_model.", ...; SDXL's OpenCLIP
// embedder is the second when the file also holds text_encoder, else the first).
int open_clip_unused_blocks();
std::string_view single_file_prefix(Component c, TextEncoderLayout text_layout,
                                    bool has_text_encoder = true);

}  // namespace diffuse::io::detail
