"""The 3D face prior: the BFM09 morphable model, its synthetic stand-in, the mesh renderer, the shape prior."""
