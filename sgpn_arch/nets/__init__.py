"""The networks: SGPN generator and its StyleGAN2 blocks, discriminator, D3DFR, ArcFace, GPEN, the composite SGPN."""
